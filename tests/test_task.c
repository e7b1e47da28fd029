/* Tasks (weft.h, "Tasks"): spawn, join, detach, identity, names, yield,
 * spawning from plain threads, scale, work stealing, and bad input.
 *
 * Each test makes its own runtime: Check forks every test, and a runtime's
 * worker threads do not survive a fork.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static void *add_one(void *arg)
{
    return (void *)((intptr_t)arg + 1);
}

static void *return_arg(void *arg)
{
    return arg;
}

/* ------------------------------------------------------------------------
 * spawn / join / detach / done */

static void *spawn_join_main(void *arg)
{
    (void)arg;
    weft_task *t = weft_spawn(add_one, (void *)41);
    ck_assert_ptr_nonnull(t);
    void *r = NULL;
    ck_assert_int_eq(weft_join(t, &r), 0);
    ck_assert_int_eq((intptr_t)r, 42);
    /* A NULL result pointer is allowed: the value is dropped. */
    t = weft_spawn(add_one, (void *)1);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(weft_join(t, NULL), 0);
    return r;
}

START_TEST(join_returns_the_task_value)
{
    void *r = NULL;
    ck_assert_int_eq(weft_run(spawn_join_main, NULL, &r), 0);
    ck_assert_int_eq((intptr_t)r, 42);
}
END_TEST

static atomic_int detached_done;

static void *detached_body(void *arg)
{
    (void)arg;
    for (int i = 0; i < 10; i++)
        tu_yield();
    atomic_fetch_add(&detached_done, 1);
    return NULL;
}

static void *detach_main(void *arg)
{
    intptr_t n = (intptr_t)arg;
    for (intptr_t i = 0; i < n; i++) {
        weft_task *t = weft_spawn(detached_body, NULL);
        ck_assert_ptr_nonnull(t);
        weft_detach(t);
    }
    weft_detach(NULL); /* a no-op */
    /* weft_run would cancel the tasks main leaves running. */
    while (atomic_load(&detached_done) < n)
        tu_yield();
    return NULL;
}

START_TEST(detached_tasks_run_to_completion)
{
    atomic_store(&detached_done, 0);
    ck_assert_int_eq(weft_run(detach_main, (void *)100, NULL), 0);
    ck_assert_int_eq(atomic_load(&detached_done), 100);
}
END_TEST

static int done_flag;

static void *wait_for_flag(void *arg)
{
    tu_yield_until(&done_flag);
    return arg;
}

static void *task_done_main(void *arg)
{
    (void)arg;
    weft_task *t = weft_spawn(wait_for_flag, (void *)7);
    ck_assert_ptr_nonnull(t);
    ck_assert(!weft_task_done(t));
    for (int i = 0; i < 10; i++)
        tu_yield();
    ck_assert(!weft_task_done(t)); /* still waiting for the flag */
    __atomic_store_n(&done_flag, 1, __ATOMIC_RELEASE);
    while (!weft_task_done(t))
        tu_yield();
    void *r = NULL;
    ck_assert_int_eq(weft_join(t, &r), 0);
    ck_assert_int_eq((intptr_t)r, 7);
    return NULL;
}

START_TEST(task_done_turns_true_when_the_task_finishes)
{
    done_flag = 0;
    tu_run_in(2, task_done_main, NULL);
}
END_TEST

/* ------------------------------------------------------------------------
 * identity: ids, weft_current, names, weft_all_tasks */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void *own_id(void *arg)
{
    (void)arg;
    return (void *)(uintptr_t)weft_task_id(weft_current());
}

static void *ids_main(void *arg)
{
    enum { N = 1000 };
    (void)arg;
    weft_task **t = calloc(N, sizeof *t);
    uint64_t *ids = calloc(N + 1, sizeof *ids);
    ck_assert(t && ids);
    for (int i = 0; i < N; i++) {
        t[i] = weft_spawn(own_id, NULL);
        TU_ASSERT(t[i] != NULL);
        ids[i] = weft_task_id(t[i]);
        TU_ASSERT(ids[i] != 0);
    }
    ids[N] = weft_task_id(weft_current());
    for (int i = 0; i < N; i++) {
        void *r = NULL;
        TU_ASSERT_INT_EQ(weft_join(t[i], &r), 0);
        /* The task sees the id its handle has. */
        TU_ASSERT((uintptr_t)r == ids[i]);
    }
    qsort(ids, N + 1, sizeof *ids, cmp_u64);
    for (int i = 1; i <= N; i++)
        TU_ASSERT(ids[i - 1] != ids[i]);
    ck_assert_uint_ne(ids[0], 0);
    free(ids);
    free(t);
    return NULL;
}

START_TEST(task_ids_are_unique_and_non_zero)
{
    tu_run_in(2, ids_main, NULL);
}
END_TEST

static void *return_current(void *arg)
{
    (void)arg;
    return weft_current();
}

static void *current_main(void *arg)
{
    (void)arg;
    weft_task *self = weft_current();
    ck_assert_ptr_nonnull(self);
    weft_task *t = weft_spawn(return_current, NULL);
    ck_assert_ptr_nonnull(t);
    void *r = NULL;
    ck_assert_int_eq(weft_join(t, &r), 0);
    ck_assert_ptr_eq(r, t); /* the child saw its own handle */
    ck_assert_ptr_ne(r, self);
    ck_assert_ptr_eq(weft_current(), self);
    return NULL;
}

START_TEST(current_is_null_outside_and_the_task_inside)
{
    ck_assert_ptr_null(weft_current());
    ck_assert_int_eq(weft_run(current_main, NULL, NULL), 0);
    ck_assert_ptr_null(weft_current());
}
END_TEST

static int name_flag;
static atomic_int name_started;

static void *named_body(void *arg)
{
    (void)arg;
    atomic_store(&name_started, 1);
    tu_yield_until(&name_flag);
    return NULL;
}

static const weft_task_info *find_info(const weft_task_info *info, size_t n,
                                       uint64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (info[i].id == id)
            return &info[i];
    return NULL;
}

static void *names_main(void *arg)
{
    enum { CAP = 16 };
    (void)arg;
    weft_task_info info[CAP];
    weft_task *self = weft_current();
    ck_assert_int_eq(weft_task_set_name(self, "names-main"), 0);

    weft_task *t = weft_spawn(named_body, NULL);
    ck_assert_ptr_nonnull(t);
    uint64_t id = weft_task_id(t);
    ck_assert_int_eq(weft_task_set_name(t, "spinner"), 0);

    /* Before it runs: NEW (or READY), named, on no worker yet or on one. */
    size_t n = weft_all_tasks(info, CAP);
    ck_assert_uint_ge(n, 2);
    ck_assert_uint_le(n, CAP);
    const weft_task_info *ti = find_info(info, n, id);
    ck_assert_ptr_nonnull(ti);
    ck_assert_str_eq(ti->name, "spinner");
    ck_assert_int_ge(ti->worker, -1);
    ck_assert_int_lt(ti->worker, 2);
    const weft_task_info *me = find_info(info, n, weft_task_id(self));
    ck_assert_ptr_nonnull(me);
    ck_assert_str_eq(me->name, "names-main");
    ck_assert_int_eq(me->state, WEFT_TASK_RUNNING);
    ck_assert_int_ge(me->worker, 0);
    ck_assert_int_lt(me->worker, 2);

    /* Once it has run: a worker, and a state of a live task. */
    while (!atomic_load(&name_started))
        tu_yield();
    n = weft_all_tasks(info, CAP);
    ti = find_info(info, n, id);
    ck_assert_ptr_nonnull(ti);
    ck_assert_str_eq(ti->name, "spinner");
    ck_assert_int_ge(ti->worker, 0);
    ck_assert_int_lt(ti->worker, 2);
    ck_assert(ti->state == WEFT_TASK_READY || ti->state == WEFT_TASK_RUNNING);

    /* Renaming while it runs; a long name is truncated to 31 bytes. */
    const char *longname = "a-name-much-longer-than-thirty-one-bytes";
    ck_assert_int_eq(weft_task_set_name(t, longname), 0);
    n = weft_all_tasks(info, CAP);
    ti = find_info(info, n, id);
    ck_assert_ptr_nonnull(ti);
    ck_assert_uint_eq(strlen(ti->name), 31);
    ck_assert_int_eq(strncmp(ti->name, longname, 31), 0);

    /* A cap smaller than the number of live tasks: the count is still
     * the full one, and nothing past cap is written. */
    memset(info, 0xa5, sizeof info);
    n = weft_all_tasks(info, 1);
    ck_assert_uint_ge(n, 2);
    ck_assert_uint_ne(info[0].id, 0xa5a5a5a5a5a5a5a5ull);
    ck_assert_uint_eq(info[1].id, 0xa5a5a5a5a5a5a5a5ull);
    ck_assert_uint_ge(weft_all_tasks(NULL, 0), 2);

    __atomic_store_n(&name_flag, 1, __ATOMIC_RELEASE);
    ck_assert_int_eq(weft_join(t, NULL), 0);
    /* Finished tasks leave the snapshot. */
    n = weft_all_tasks(info, CAP);
    ck_assert_ptr_null(find_info(info, n, id));
    return NULL;
}

START_TEST(all_tasks_shows_name_state_and_worker)
{
    name_flag = 0;
    atomic_store(&name_started, 0);
    weft_task_info info[4];
    ck_assert_uint_eq(weft_all_tasks(info, 4), 0); /* outside a task */
    tu_run_in(2, names_main, NULL);
}
END_TEST

static void *runtime_tasks_body(void *arg)
{
    tu_yield_until(arg);
    return NULL;
}

START_TEST(runtime_tasks_lists_tasks_from_a_plain_thread)
{
    enum { N = 8 };
    weft_config cfg = {.workers = 2};
    weft_runtime *rt = weft_runtime_new(&cfg);
    ck_assert_ptr_nonnull(rt);
    int flag = 0;
    weft_task *t[N];
    uint64_t ids[N];
    for (int i = 0; i < N; i++) {
        weft_task_opts o = {.name = "listed"};
        t[i] = weft_spawn_ex(rt, runtime_tasks_body, &flag, &o);
        ck_assert_ptr_nonnull(t[i]);
        ids[i] = weft_task_id(t[i]);
    }
    weft_task_info info[2 * N];
    size_t n = weft_runtime_tasks(rt, info, 2 * N);
    ck_assert_uint_eq(n, N);
    for (int i = 0; i < N; i++) {
        const weft_task_info *ti = find_info(info, n, ids[i]);
        ck_assert_ptr_nonnull(ti);
        ck_assert_str_eq(ti->name, "listed");
    }
    __atomic_store_n(&flag, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(weft_join(t[i], NULL), 0);
    ck_assert_uint_eq(weft_runtime_tasks(rt, info, 2 * N), 0);
    weft_runtime_free(rt);
}
END_TEST

/* ------------------------------------------------------------------------
 * yield */

enum { YIELDS = 200 };
static char ylog[2 * YIELDS];
static atomic_int ylen;

static void *yielder(void *arg)
{
    char who = (char)(intptr_t)arg;
    for (int i = 0; i < YIELDS; i++) {
        ylog[atomic_fetch_add(&ylen, 1)] = who;
        tu_yield();
    }
    return NULL;
}

static void *yield_main(void *arg)
{
    (void)arg;
    weft_task *a = weft_spawn(yielder, (void *)'a');
    weft_task *b = weft_spawn(yielder, (void *)'b');
    ck_assert(a && b);
    ck_assert_int_eq(weft_join(a, NULL), 0);
    ck_assert_int_eq(weft_join(b, NULL), 0);
    return NULL;
}

START_TEST(yield_lets_the_other_task_run)
{
    /* One worker: the two tasks can only interleave if each yield lets
     * the other ready task run. */
    atomic_store(&ylen, 0);
    tu_run_in(1, yield_main, NULL);
    ck_assert_int_eq(atomic_load(&ylen), 2 * YIELDS);
    int switches = 0, run = 1, longest = 1;
    for (int i = 1; i < 2 * YIELDS; i++) {
        if (ylog[i] != ylog[i - 1]) {
            switches++;
            run = 1;
        } else if (++run > longest) {
            longest = run;
        }
    }
    ck_assert_msg(longest <= 2,
                  "a task ran %d times in a row without the other (%d "
                  "switches in %d entries)",
                  longest, switches, 2 * YIELDS);
    ck_assert_int_ge(switches, 2 * YIELDS - 3);
}
END_TEST

static void *lone_yielder(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++)
        TU_ASSERT_INT_EQ(weft_yield(), 0);
    return (void *)1;
}

START_TEST(yield_with_nothing_else_ready_returns_at_once)
{
    ck_assert_int_eq((intptr_t)tu_run_in(1, lone_yielder, NULL), 1);
}
END_TEST

START_TEST(yield_outside_a_task_returns_eperm)
{
    ck_assert_int_eq(weft_yield(), -EPERM);
}
END_TEST

/* ------------------------------------------------------------------------
 * plain threads */

START_TEST(plain_thread_joins_a_task_it_spawned)
{
    weft_config cfg = {.workers = 2};
    weft_runtime *rt = weft_runtime_new(&cfg);
    ck_assert_ptr_nonnull(rt);
    weft_task_opts o = {.name = "from-plain", .stack_size = 128 * 1024};
    weft_task *t = weft_spawn_ex(rt, add_one, (void *)99, &o);
    ck_assert_ptr_nonnull(t);
    weft_task *u = weft_spawn_ex(rt, add_one, (void *)9, NULL);
    ck_assert_ptr_nonnull(u);
    void *r = NULL;
    ck_assert_int_eq(weft_join(t, &r), 0);
    ck_assert_int_eq((intptr_t)r, 100);
    ck_assert_int_eq(weft_join(u, &r), 0);
    ck_assert_int_eq((intptr_t)r, 10);
    weft_runtime_free(rt);
}
END_TEST

static void *in_other_runtime(void *arg)
{
    weft_runtime *other = arg;
    ck_assert_ptr_eq(weft_runtime_current(), other);
    for (int i = 0; i < 10; i++)
        tu_yield();
    return other;
}

static void *spawn_into_other(void *arg)
{
    weft_runtime *other = arg;
    weft_runtime *self = weft_runtime_current();
    ck_assert_ptr_ne(self, other);
    weft_task_opts o = {.name = "visitor"};
    weft_task *t[8];
    for (int i = 0; i < 8; i++) {
        t[i] = weft_spawn_ex(other, in_other_runtime, other, &o);
        ck_assert_ptr_nonnull(t[i]);
    }
    for (int i = 0; i < 8; i++) {
        void *r = NULL;
        ck_assert_int_eq(weft_join(t[i], &r), 0);
        ck_assert_ptr_eq(r, other);
    }
    ck_assert_ptr_eq(weft_runtime_current(), self);
    return NULL;
}

START_TEST(task_spawns_into_and_joins_from_another_runtime)
{
    /* One worker each: the joining task must suspend, not block its
     * worker, and the other runtime's worker must wake it. */
    weft_config one = {.workers = 1};
    weft_runtime *a = weft_runtime_new(&one);
    weft_runtime *b = weft_runtime_new(&one);
    ck_assert(a && b);
    ck_assert_int_eq(weft_runtime_run(a, spawn_into_other, b, NULL), 0);
    weft_runtime_free(b);
    weft_runtime_free(a);
}
END_TEST

enum { PLAIN_THREADS = 4, PER_THREAD = 10000 };

struct spawner {
    weft_runtime *rt;
    pthread_barrier_t *start;
    int base;
    weft_task *t[PER_THREAD];
};

static atomic_long spawned_sum;

static void *add_to_sum(void *arg)
{
    atomic_fetch_add(&spawned_sum, (long)(intptr_t)arg);
    return arg;
}

static void *spawner_thread(void *arg)
{
    struct spawner *sp = arg;
    pthread_barrier_wait(sp->start);
    for (int i = 0; i < PER_THREAD; i++) {
        sp->t[i] = weft_spawn_ex(sp->rt, add_to_sum,
                                 (void *)(intptr_t)(sp->base + i), NULL);
        if (!sp->t[i])
            return (void *)(intptr_t)errno;
    }
    return NULL;
}

START_TEST(four_plain_threads_spawn_into_one_runtime_at_once)
{
    weft_config cfg = {.workers = 2};
    weft_runtime *rt = weft_runtime_new(&cfg);
    ck_assert_ptr_nonnull(rt);
    atomic_store(&spawned_sum, 0);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, PLAIN_THREADS);
    struct spawner *sp = calloc(PLAIN_THREADS, sizeof *sp);
    ck_assert_ptr_nonnull(sp);
    pthread_t th[PLAIN_THREADS];
    for (int k = 0; k < PLAIN_THREADS; k++) {
        sp[k] =
            (struct spawner){.rt = rt, .start = &start, .base = k * PER_THREAD};
        ck_assert_int_eq(pthread_create(&th[k], NULL, spawner_thread, &sp[k]),
                         0);
    }
    for (int k = 0; k < PLAIN_THREADS; k++) {
        void *err = NULL;
        ck_assert_int_eq(pthread_join(th[k], &err), 0);
        ck_assert_msg(err == NULL, "spawn from plain thread %d: errno %d", k,
                      (int)(intptr_t)err);
    }
    long n = (long)PLAIN_THREADS * PER_THREAD;
    for (int k = 0; k < PLAIN_THREADS; k++) {
        for (int i = 0; i < PER_THREAD; i++) {
            void *r = NULL;
            TU_ASSERT_INT_EQ(weft_join(sp[k].t[i], &r), 0);
            TU_ASSERT_INT_EQ((intptr_t)r, sp[k].base + i);
        }
    }
    ck_assert_int_eq(atomic_load(&spawned_sum), n * (n - 1) / 2);
    weft_runtime_free(rt);
    pthread_barrier_destroy(&start);
    free(sp);
}
END_TEST

/* ------------------------------------------------------------------------
 * scale: a million tasks, fork-join fib, stealing */

static const unsigned worker_counts[] = {1, 2, 4, 8};

static atomic_long million_sum;

static void *add_index(void *arg)
{
    atomic_fetch_add_explicit(&million_sum, (long)(intptr_t)arg,
                              memory_order_relaxed);
    return arg;
}

static void *million_main(void *arg)
{
    long n = (long)(intptr_t)arg;
    weft_task **t = malloc((size_t)n * sizeof *t);
    ck_assert_ptr_nonnull(t);
    for (long i = 0; i < n; i++) {
        t[i] = weft_spawn(add_index, (void *)(intptr_t)i);
        TU_ASSERT(t[i] != NULL);
    }
    long joined = 0;
    for (long i = 0; i < n; i++) {
        void *r = NULL;
        TU_ASSERT_INT_EQ(weft_join(t[i], &r), 0);
        TU_ASSERT_INT_EQ((intptr_t)r, i);
        joined += (long)(intptr_t)r;
    }
    free(t);
    return (void *)(intptr_t)joined;
}

START_TEST(million_tasks_spawned_then_joined_sum_exactly)
{
    unsigned workers = worker_counts[_i];
    long n = TU_SCALE(1000000, 100000, 20000);
    atomic_store(&million_sum, 0);
    int64_t t0 = tu_now_ns();
    void *r = tu_run_in(workers, million_main, (void *)(intptr_t)n);
    double s = (double)(tu_now_ns() - t0) / 1e9;
    fprintf(stderr, "%ld tasks spawned then joined on %u workers: %.3f s\n", n,
            workers, s);
    ck_assert_int_eq((intptr_t)r, n * (n - 1) / 2);
    ck_assert_int_eq(atomic_load(&million_sum), n * (n - 1) / 2);
}
END_TEST

START_TEST(fork_join_fib_is_correct)
{
    static const unsigned workers[] = {1, 2, 4};
    int n = TU_SCALE(27, 24, 18);
    int64_t t0 = tu_now_ns();
    void *r = tu_run_in(workers[_i], tu_fib_task, (void *)(intptr_t)n);
    fprintf(stderr, "fork-join fib(%d) on %u workers: %.3f s\n", n, workers[_i],
            (double)(tu_now_ns() - t0) / 1e9);
    ck_assert_int_eq((intptr_t)r, tu_fib(n));
    if (n == 27)
        ck_assert_int_eq((intptr_t)r, 196418);
}
END_TEST

/* Tasks record the worker they run on, then keep their worker busy (no
 * yield) until two workers have been seen, so another worker must take
 * some of them: the test passes only if work moves between workers. */
static atomic_ulong workers_seen;
static int64_t spread_deadline_ns; /* set before the tasks are spawned */

static void *busy_until_two_workers(void *arg)
{
    (void)arg;
    int w = tu_current_worker();
    ck_assert_int_lt(w, 64);
    atomic_fetch_or(&workers_seen, 1ul << w);
    /* One deadline for all, so that a scheduler that never moves work
     * fails in 10 s rather than timing out. */
    while (__builtin_popcountl(atomic_load(&workers_seen)) < 2 &&
           tu_now_ns() < spread_deadline_ns)
        ;
    return (void *)(intptr_t)w;
}

static void *spread_main(void *arg)
{
    enum { N = 16 };
    unsigned workers = (unsigned)(uintptr_t)arg;
    spread_deadline_ns = tu_now_ns() + 10 * 1000000000ll;
    weft_task *t[N];
    for (int i = 0; i < N; i++) {
        t[i] = weft_spawn(busy_until_two_workers, NULL);
        ck_assert_ptr_nonnull(t[i]);
    }
    for (int i = 0; i < N; i++) {
        void *r = NULL;
        ck_assert_int_eq(weft_join(t[i], &r), 0);
        ck_assert_int_ge((intptr_t)r, 0);
        ck_assert_int_lt((intptr_t)r, workers);
    }
    /* The per-worker counters agree: more than one worker ran tasks. */
    int ran = 0;
    for (unsigned w = 0; w < workers; w++) {
        weft_counters c;
        ck_assert_int_eq(weft_stats_worker(NULL, w, &c), 0);
        ran += c.runs > 0;
    }
    ck_assert_int_ge(ran, 2);
    return NULL;
}

START_TEST(tasks_run_on_more_than_one_worker)
{
    static const unsigned workers[] = {2, 4};
    atomic_store(&workers_seen, 0);
    tu_run_in(workers[_i], spread_main, (void *)(uintptr_t)workers[_i]);
    unsigned long seen = atomic_load(&workers_seen);
    ck_assert_msg(__builtin_popcountl(seen) >= 2,
                  "all tasks ran on one worker (mask %#lx)", seen);
}
END_TEST

static void *fib_spread_main(void *arg)
{
    void *r = tu_fib_task(arg);
    weft_stats s;
    ck_assert_int_eq(weft_stats_get(NULL, &s), 0);
    fprintf(
        stderr,
        "fib work: steals %llu of %llu tried, inject pops %llu, "
        "grows %llu, parks %llu, wakeups %llu, runs %llu, "
        "spawned %llu\n",
        (unsigned long long)s.total.steals,
        (unsigned long long)s.total.steals_tried,
        (unsigned long long)s.total.inject_pops,
        (unsigned long long)s.total.grows, (unsigned long long)s.total.parks,
        (unsigned long long)s.total.wakeups, (unsigned long long)s.total.runs,
        (unsigned long long)s.total.spawned);
    ck_assert_uint_gt(s.total.steals, 0);
    return r;
}

START_TEST(fork_join_work_is_stolen_by_idle_workers)
{
    int n = TU_SCALE(27, 24, 18);
    void *r = tu_run_in(2, fib_spread_main, (void *)(intptr_t)n);
    ck_assert_int_eq((intptr_t)r, tu_fib(n));
}
END_TEST

/* ------------------------------------------------------------------------
 * bad input */

static void *spawn_null_main(void *arg)
{
    (void)arg;
    errno = 0;
    ck_assert_ptr_null(weft_spawn(NULL, NULL));
    ck_assert_int_eq(errno, EINVAL);
    errno = 0;
    ck_assert_ptr_null(weft_spawn_ex(NULL, NULL, NULL, NULL));
    ck_assert_int_eq(errno, EINVAL);
    return NULL;
}

START_TEST(spawn_of_null_function_fails_with_einval)
{
    ck_assert_int_eq(weft_run(spawn_null_main, NULL, NULL), 0);
}
END_TEST

START_TEST(spawn_outside_a_task_fails_with_eperm)
{
    errno = 0;
    ck_assert_ptr_null(weft_spawn(return_arg, NULL));
    ck_assert_int_eq(errno, EPERM);
    /* Also with a runtime alive: the calling thread is still no task. */
    weft_config cfg = {.workers = 1};
    weft_runtime *rt = weft_runtime_new(&cfg);
    ck_assert_ptr_nonnull(rt);
    errno = 0;
    ck_assert_ptr_null(weft_spawn(return_arg, NULL));
    ck_assert_int_eq(errno, EPERM);
    weft_runtime_free(rt);
}
END_TEST

START_TEST(spawn_ex_without_a_runtime_fails_with_einval)
{
    errno = 0;
    ck_assert_ptr_null(weft_spawn_ex(NULL, return_arg, NULL, NULL));
    ck_assert_int_eq(errno, EINVAL);
    weft_runtime *rt = weft_runtime_new(NULL);
    ck_assert_ptr_nonnull(rt);
    errno = 0;
    ck_assert_ptr_null(weft_spawn_ex(rt, NULL, NULL, NULL));
    ck_assert_int_eq(errno, EINVAL);
    weft_runtime_free(rt);
}
END_TEST

START_TEST(spawn_ex_with_too_small_a_stack_fails_with_einval)
{
    weft_config cfg = {.workers = 1};
    weft_runtime *rt = weft_runtime_new(&cfg);
    ck_assert_ptr_nonnull(rt);
    static const size_t bad[] = {1, 4096, WEFT_STACK_MIN - 1};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        weft_task_opts o = {.stack_size = bad[i]};
        errno = 0;
        ck_assert_ptr_null(weft_spawn_ex(rt, return_arg, NULL, &o));
        ck_assert_int_eq(errno, EINVAL);
    }
    /* The minimum itself, and one byte more (rounded up), are fine. */
    static const size_t good[] = {WEFT_STACK_MIN, WEFT_STACK_MIN + 1};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        weft_task_opts o = {.stack_size = good[i]};
        weft_task *t = weft_spawn_ex(rt, return_arg, (void *)5, &o);
        ck_assert_ptr_nonnull(t);
        void *r = NULL;
        ck_assert_int_eq(weft_join(t, &r), 0);
        ck_assert_int_eq((intptr_t)r, 5);
    }
    weft_runtime_free(rt);
}
END_TEST

static void *join_self(void *arg)
{
    (void)arg;
    void *r = (void *)0x1234;
    int rc = weft_join(weft_current(), &r);
    ck_assert_ptr_eq(r, (void *)0x1234); /* untouched */
    return (void *)(intptr_t)rc;
}

static void *join_bad_main(void *arg)
{
    (void)arg;
    ck_assert_int_eq(weft_join(NULL, NULL), -EINVAL);
    /* The handle is kept after a self-join: the parent can still join. */
    weft_task *t = weft_spawn(join_self, NULL);
    ck_assert_ptr_nonnull(t);
    void *r = NULL;
    ck_assert_int_eq(weft_join(t, &r), 0);
    ck_assert_int_eq((intptr_t)r, -EINVAL);
    return NULL;
}

START_TEST(join_of_null_or_of_itself_fails_with_einval)
{
    ck_assert_int_eq(weft_join(NULL, NULL), -EINVAL);
    ck_assert_int_eq(weft_run(join_bad_main, NULL, NULL), 0);
}
END_TEST

static void *set_name_bad_main(void *arg)
{
    (void)arg;
    ck_assert_int_eq(weft_task_set_name(NULL, "x"), -EINVAL);
    ck_assert_int_eq(weft_task_set_name(weft_current(), NULL), -EINVAL);
    ck_assert_int_eq(weft_task_set_name(weft_current(), ""), 0);
    return NULL;
}

START_TEST(set_name_with_null_fails_with_einval)
{
    ck_assert_int_eq(weft_task_set_name(NULL, "x"), -EINVAL);
    ck_assert_int_eq(weft_run(set_name_bad_main, NULL, NULL), 0);
}
END_TEST

static Suite *task_suite(void)
{
    Suite *s = suite_create("task");

    TCase *tc = tcase_create("spawn_join");
    tcase_add_test(tc, join_returns_the_task_value);
    tcase_add_test(tc, detached_tasks_run_to_completion);
    tcase_add_test(tc, task_done_turns_true_when_the_task_finishes);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("identity");
    tcase_add_test(tc, task_ids_are_unique_and_non_zero);
    tcase_add_test(tc, current_is_null_outside_and_the_task_inside);
    tcase_add_test(tc, all_tasks_shows_name_state_and_worker);
    tcase_add_test(tc, runtime_tasks_lists_tasks_from_a_plain_thread);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("yield");
    tcase_add_test(tc, yield_lets_the_other_task_run);
    tcase_add_test(tc, yield_with_nothing_else_ready_returns_at_once);
    tcase_add_test(tc, yield_outside_a_task_returns_eperm);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);

    tc = tcase_create("plain_thread");
    tcase_add_test(tc, plain_thread_joins_a_task_it_spawned);
    tcase_add_test(tc, four_plain_threads_spawn_into_one_runtime_at_once);
    tcase_add_test(tc, task_spawns_into_and_joins_from_another_runtime);
    tcase_set_timeout(tc, TU_STRESS_TIMEOUT);
    suite_add_tcase(s, tc);

    tc = tcase_create("scale");
    tcase_add_loop_test(tc, million_tasks_spawned_then_joined_sum_exactly, 0,
                        4);
    tcase_add_loop_test(tc, fork_join_fib_is_correct, 0, 3);
    tcase_add_loop_test(tc, tasks_run_on_more_than_one_worker, 0, 2);
    tcase_add_test(tc, fork_join_work_is_stolen_by_idle_workers);
    tcase_set_timeout(tc, TU_STRESS_TIMEOUT);
    suite_add_tcase(s, tc);

    tc = tcase_create("bad_input");
    tcase_add_test(tc, spawn_of_null_function_fails_with_einval);
    tcase_add_test(tc, spawn_outside_a_task_fails_with_eperm);
    tcase_add_test(tc, spawn_ex_without_a_runtime_fails_with_einval);
    tcase_add_test(tc, spawn_ex_with_too_small_a_stack_fails_with_einval);
    tcase_add_test(tc, join_of_null_or_of_itself_fails_with_einval);
    tcase_add_test(tc, set_name_with_null_fails_with_einval);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(task_suite());
}
