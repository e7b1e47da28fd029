/* yield: the cost of stepping aside. One task yields n times (parties=1),
 * or two tasks take turns, n/2 yields each (parties=2).
 *
 *   weft        weft_yield() in tasks of a runtime of P workers
 *   thread      sched_yield(): in one thread, or in two threads pinned to
 *               one CPU so that each yield really hands the CPU over
 *   process     two processes pinned to one CPU, sched_yield()
 *
 * threadpool and processpool are not run: a pool runs a job to completion,
 * so there is nothing for a job to yield to. Go (runtime.Gosched) and
 * Python (await asyncio.sleep(0)) are in bench/go and bench/py.
 *
 * With two parties each yield records whether the other party ran since
 * this one's previous turn (handoff_pct=): 100 means they alternated.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench.h"

/* Shared by the parties of one cell. */
struct turns {
    uint64_t per_party; /* yields each party makes */
    int last;           /* party that yielded last; relaxed atomics */
    uint64_t yields;    /* total made, atomic add */
    uint64_t handoffs;  /* turns where the other party had run, atomic */
    int err;            /* first weft_yield error, if any */
};

/* One party's turns. yield_fn is weft_yield or a sched_yield wrapper. */
static void take_turns(struct turns *t, int me, int (*yield_fn)(void))
{
    uint64_t handoffs = 0;
    for (uint64_t i = 0; i < t->per_party; i++) {
        /* Relaxed: only a statistic; whichever write we see is fine. */
        __atomic_store_n(&t->last, me, __ATOMIC_RELAXED);
        int err = yield_fn();
        if (err < 0) {
            __atomic_store_n(&t->err, err, __ATOMIC_RELAXED);
            return;
        }
        if (__atomic_load_n(&t->last, __ATOMIC_RELAXED) != me)
            handoffs++;
    }
    __atomic_add_fetch(&t->yields, t->per_party, __ATOMIC_RELAXED);
    __atomic_add_fetch(&t->handoffs, handoffs, __ATOMIC_RELAXED);
}

static int os_yield(void)
{
    return sched_yield() < 0 ? -errno : 0;
}

static int weft_yield_checked(void)
{
    return weft_yield();
}

/* ---------------------------------------------------------------------------
 * weft */

struct weft_party {
    struct turns *t;
    int me;
};

static void *weft_party_task(void *arg)
{
    struct weft_party *p = arg;
    take_turns(p->t, p->me, weft_yield_checked);
    return NULL;
}

static void *weft_main(void *arg)
{
    struct turns *t = arg;
    if (t->per_party == 0)
        return NULL;
    struct weft_party parties[2] = {{t, 0}, {t, 1}};
    weft_task *h[2];
    for (int i = 0; i < 2; i++) {
        h[i] = weft_spawn(weft_party_task, &parties[i]);
        if (!h[i]) {
            t->err = -errno;
            return NULL;
        }
    }
    for (int i = 0; i < 2; i++) {
        int err = weft_join(h[i], NULL);
        if (err < 0)
            t->err = err;
    }
    return NULL;
}

static void *weft_single(void *arg)
{
    take_turns(arg, 0, weft_yield_checked);
    return NULL;
}

static int run_weft(const struct bench_cell *c, struct turns *t,
                    struct bench_result *res)
{
    int64_t ns;
    int err =
        bench_weft_run(c->workers, c->parties == 2 ? weft_main : weft_single, t,
                       NULL, &ns, res);
    if (err < 0)
        return err;
    res->ns_per_op = (double)ns / (double)c->n;
    return 0;
}

/* ---------------------------------------------------------------------------
 * thread and process */

struct os_party {
    struct turns *t;
    int me;
};

static void *os_party_thread(void *arg)
{
    struct os_party *p = arg;
    if (p->t->per_party && p->me >= 0) {
        int err = bench_pin_first_cpu();
        if (err < 0) {
            p->t->err = err;
            return NULL;
        }
    }
    take_turns(p->t, p->me < 0 ? 0 : p->me, os_yield);
    return NULL;
}

static int run_threads(const struct bench_cell *c, struct turns *t,
                       struct bench_result *res)
{
    int64_t t0 = bench_now_ns();
    if (c->parties != 2) {
        struct os_party p = {t, -1}; /* alone: not pinned */
        os_party_thread(&p);
    } else {
        struct os_party p[2] = {{t, 0}, {t, 1}};
        pthread_t th[2];
        for (int i = 0; i < 2; i++) {
            int err = pthread_create(&th[i], NULL, os_party_thread, &p[i]);
            if (err)
                return -err;
        }
        for (int i = 0; i < 2; i++)
            pthread_join(th[i], NULL);
    }
    res->ns_per_op = (double)(bench_now_ns() - t0) / (double)c->n;
    if (c->parties == 2)
        bench_extra(res, "pinned=1cpu");
    return 0;
}

/* The parties are processes; their shared state lives in a shared
 * mapping and is copied back to *out at the end. */
static int run_processes(const struct bench_cell *c, struct turns *out,
                         struct bench_result *res)
{
    if (c->parties != 2)
        return -ENOTSUP;
    struct turns *t = mmap(NULL, sizeof *t, PROT_READ | PROT_WRITE,
                           MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (t == MAP_FAILED)
        return -errno;
    *t = *out;
    int64_t start = bench_now_ns();
    pid_t pid[2];
    for (int i = 0; i < 2; i++) {
        pid[i] = fork();
        if (pid[i] == 0) {
            struct os_party p = {t, i};
            os_party_thread(&p);
            _exit(t->err ? 1 : 0);
        }
        if (pid[i] < 0)
            t->err = -errno;
    }
    for (int i = 0; i < 2; i++) {
        int status;
        if (pid[i] > 0 && (waitpid(pid[i], &status, 0) < 0 || status != 0) &&
            !t->err)
            t->err = -ECHILD;
    }
    res->ns_per_op = (double)(bench_now_ns() - start) / (double)c->n;
    bench_extra(res, "pinned=1cpu");
    *out = *t;
    munmap(t, sizeof *t);
    return 0;
}

/* ---------------------------------------------------------------------------
 * The workload */

static int yield_run(const struct bench_cell *c, struct bench_result *res)
{
    if (c->parties != 1 && c->parties != 2)
        return -EINVAL;
    struct turns t = {.per_party = c->n / c->parties};
    if (t.per_party * c->parties != c->n)
        return -EINVAL; /* parties=2 needs an even n */
    int err;
    if (strcmp(c->mode, "weft") == 0)
        err = run_weft(c, &t, res);
    else if (strcmp(c->mode, "thread") == 0)
        err = run_threads(c, &t, res);
    else if (strcmp(c->mode, "process") == 0)
        err = run_processes(c, &t, res);
    else
        return -ENOTSUP;
    if (err < 0)
        return err;
    if (t.err < 0)
        bench_perror("yield", t.err);
    res->ok = t.err == 0 && t.yields == c->n;
    if (c->parties == 2)
        bench_extra(res, "handoff_pct=%.1f",
                    c->n ? 100.0 * (double)t.handoffs / (double)c->n : 0.0);
    return 0;
}

static uint64_t yield_default_n(const struct bench_cell *c, bool full)
{
    if (strcmp(c->mode, "asyncio") == 0 || strcmp(c->mode, "uvloop") == 0)
        return full ? 3000000 : 300000;
    if (strcmp(c->mode, "thread") == 0 || strcmp(c->mode, "process") == 0)
        return full ? 10000000 : 1000000;
    return 10000000;
}

static void plan_group(struct bench_plan *plan, unsigned parties)
{
    const char *group = parties == 1 ? "one task yields (parties=1)"
                                     : "two tasks alternate (parties=2)";
    struct bench_cell c = {.parties = parties};
    bool full = bench_plan_full(plan);
    unsigned w[3], nw = bench_plan_worker_counts(plan, w);
    const char *os_note = full ? NULL : "smaller n: a syscall per yield";
    const char *py_note = full ? "smaller n (3M)" : "smaller n (300k)";

    for (unsigned i = 0; i < nw; i++) {
        c.mode = "weft";
        bench_plan_add(plan, group, "weft", w[i], yield_default_n(&c, full), 0,
                       parties, NULL);
    }
    c.mode = "thread";
    bench_plan_add(
        plan, group, "thread", parties, yield_default_n(&c, full), 0, parties,
        parties == 2 ? (full ? "2 threads pinned to 1 CPU"
                             : "smaller n, 2 threads pinned to 1 CPU")
                     : os_note);
    if (parties == 2)
        bench_plan_add(plan, group, "process", 2, yield_default_n(&c, full), 0,
                       parties,
                       full ? "2 processes pinned to 1 CPU"
                            : "smaller n, 2 processes pinned to 1 CPU");
    else
        bench_plan_note(plan, group,
                        "process: one process yielding is the thread row "
                        "(same syscall); see parties=2");
    for (unsigned i = 0; i < nw; i++)
        bench_plan_add(plan, group, "go", w[i], 10000000, 0, parties, NULL);
    c.mode = "asyncio";
    bench_plan_add(plan, group, "asyncio", 1, yield_default_n(&c, full), 0,
                   parties, py_note);
    bench_plan_add(plan, group, "uvloop", 1, yield_default_n(&c, full), 0,
                   parties, py_note);
    bench_plan_note(plan, group,
                    "threadpool, processpool: skipped, a pool runs each job "
                    "to completion; there is nothing to yield to");
}

static void yield_plan(struct bench_plan *plan)
{
    plan_group(plan, 1);
    plan_group(plan, 2);
    bench_plan_observability(plan, 400000, 2);
}

const struct bench_workload bench_yield = {
    .name = "yield",
    .op = "ns per yield",
    .run = yield_run,
    .default_n = yield_default_n,
    .plan = yield_plan,
};
