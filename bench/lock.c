/* lock and lock_yield: T parties (the cell's `parties`) make n increments
 * of one shared counter in all, each under one lock; one op is an
 * increment. Party i makes n / T of them, one more if i < n % T.
 *
 *   lock        the increment is all the critical section does
 *   lock_yield  the holder yields inside it (reads the counter, yields,
 *               writes it back plus one), so that the others run while it
 *               holds the lock and queue for it: the lock changes hands
 *               through its waiters, not by one party running its share
 *               alone
 *
 * Modes (the yield in brackets):
 *   weft         T tasks of a P-worker runtime, weft_lock (weft_yield)
 *   thread-weft  T plain threads, weft_lock (sched_yield)
 *   thread       T threads, a default pthread_mutex_t (sched_yield)
 *   process      T processes, a PTHREAD_PROCESS_SHARED mutex in a shared
 *                anonymous mapping (sched_yield)
 *
 * Go (sync.Mutex, runtime.Gosched) and Python (asyncio.Lock,
 * asyncio.sleep(0)) are in bench/go/lock{,_yield}.go and
 * bench/py/lock{,_yield}.py.
 *
 * The parties start together: tasks wait on a weft_event, threads and
 * processes read a pipe until the cell closes it. The clock runs from the
 * opening of that gate to the last party's end.
 *
 * The check: the counter ends at exactly n. An increment reads and writes
 * the counter as two steps (with a yield between them in lock_yield), so a
 * lock that let two holders in would lose updates. handoff_pct= is the
 * share of acquires that took the lock from another party (counted under
 * the lock): near 0 when each party runs its share alone, 100 when the
 * lock changes hands at every acquire.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench.h"

#define NO_PARTY UINT_MAX

/* Shared by the parties. It lives in a shared anonymous mapping, so that
 * forked parties share it too. */
struct lk_shared {
    union {
        weft_lock weft;
        pthread_mutex_t pthread;
    } lock;
    uint64_t counter;  /* under the lock */
    unsigned last;     /* under the lock: the last holder, or NO_PARTY */
    uint64_t handoffs; /* under the lock: acquires after another's hold */
    int err;           /* the first error; atomic, set once */
};

static void fail(struct lk_shared *s, int err)
{
    int none = 0;
    __atomic_compare_exchange_n(&s->err, &none, err, false, __ATOMIC_RELAXED,
                                __ATOMIC_RELAXED);
}

/* The lock and the yield of one mode. The lock calls are made directly,
 * not through function pointers, so that a weft_lock cell measures what a
 * program calling weft_lock_acquire pays (Go's cell inlines its Lock). */
enum lk_kind { LK_WEFT_TASK, LK_WEFT_THREAD, LK_PTHREAD };

static int lk_acquire(struct lk_shared *s, enum lk_kind k)
{
    if (k == LK_PTHREAD)
        return -pthread_mutex_lock(&s->lock.pthread);
    return weft_lock_acquire(&s->lock.weft);
}

static int lk_release(struct lk_shared *s, enum lk_kind k)
{
    if (k == LK_PTHREAD)
        return -pthread_mutex_unlock(&s->lock.pthread);
    return weft_lock_release(&s->lock.weft);
}

static int lk_yield(enum lk_kind k)
{
    if (k == LK_WEFT_TASK)
        return weft_yield();
    return sched_yield() < 0 ? -errno : 0;
}

/* One party. */
struct lk_party {
    struct lk_shared *s;
    enum lk_kind kind;
    unsigned me;
    uint64_t share;    /* increments to make */
    bool yield;        /* lock_yield */
    int gate;          /* threads, processes: read until end of file */
    weft_event *start; /* tasks: set when they may start */
};

/* One increment under the lock. */
static int increment(const struct lk_party *p)
{
    struct lk_shared *s = p->s;
    int err = lk_acquire(s, p->kind);
    if (err < 0)
        return err;
    if (s->last != p->me && s->last != NO_PARTY)
        s->handoffs++;
    s->last = p->me;
    uint64_t v = s->counter;
    if (p->yield)
        err = lk_yield(p->kind);
    s->counter = v + 1;
    int rc = lk_release(s, p->kind);
    return err < 0 ? err : rc;
}

static void party_run(const struct lk_party *p)
{
    for (uint64_t i = 0; i < p->share; i++) {
        int err = increment(p);
        if (err < 0) {
            fail(p->s, err);
            return;
        }
    }
}

/* Wait for the gate: a read of the pipe that the cell closes. */
static void *party_thread(void *arg)
{
    const struct lk_party *p = arg;
    char c;
    ssize_t k;
    do
        k = read(p->gate, &c, 1);
    while (k < 0 && errno == EINTR);
    if (k != 0)
        fail(p->s, k < 0 ? -errno : -EPROTO);
    else
        party_run(p);
    return NULL;
}

/* ---------------------------------------------------------------------------
 * weft tasks */

struct lk_tasks {
    struct lk_party *parties;
    unsigned n;
    weft_event gate;
    int64_t ns; /* from the gate's opening to the last join */
};

static void *party_task(void *arg)
{
    struct lk_party *p = arg;
    int err = weft_event_wait(p->start);
    if (err < 0)
        fail(p->s, err);
    else
        party_run(p);
    return NULL;
}

static void *tasks_main(void *arg)
{
    struct lk_tasks *t = arg;
    struct lk_shared *s = t->parties[0].s;
    weft_task **h = calloc(t->n, sizeof *h);
    if (!h) {
        fail(s, -ENOMEM);
        return NULL;
    }
    unsigned spawned = 0;
    for (; spawned < t->n; spawned++) {
        h[spawned] = weft_spawn(party_task, &t->parties[spawned]);
        if (!h[spawned]) {
            fail(s, -errno);
            break;
        }
    }
    int64_t t0 = bench_now_ns();
    weft_event_set(&t->gate); /* after a failure too: the spawned finish */
    for (unsigned i = 0; i < spawned; i++) {
        int err = weft_join(h[i], NULL);
        if (err < 0)
            fail(s, err);
    }
    t->ns = bench_now_ns() - t0;
    free(h);
    return NULL;
}

static int run_tasks(const struct bench_cell *c, struct lk_party *p,
                     int64_t *ns, struct bench_result *res)
{
    struct lk_tasks t = {.parties = p, .n = c->parties};
    int err = weft_event_init(&t.gate);
    if (err < 0)
        return err;
    for (unsigned i = 0; i < c->parties; i++)
        p[i].start = &t.gate;
    err = bench_weft_run(c->workers, tasks_main, &t, NULL, NULL, res);
    *ns = t.ns;
    int left = weft_event_destroy(&t.gate);
    return err < 0 ? err : left;
}

/* ---------------------------------------------------------------------------
 * Threads and processes */

static int run_threads(struct lk_party *p, unsigned n, int64_t *ns)
{
    pthread_t *th = calloc(n, sizeof *th);
    int gate[2];
    if (!th)
        return -ENOMEM;
    if (pipe(gate) < 0) {
        free(th);
        return -errno;
    }
    unsigned started = 0;
    int err = 0;
    for (; started < n; started++) {
        p[started].gate = gate[0];
        err = -pthread_create(&th[started], NULL, party_thread, &p[started]);
        if (err < 0)
            break;
    }
    int64_t t0 = bench_now_ns();
    close(gate[1]); /* after a failure too: the started finish */
    for (unsigned i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    *ns = bench_now_ns() - t0;
    close(gate[0]);
    free(th);
    return err;
}

/* Every child closes the gate's write end, so that the parent's close is
 * the last and ends their reads. A child reports through its exit status
 * and the shared err. */
static int run_processes(struct lk_party *p, unsigned n, int64_t *ns)
{
    pid_t *pid = calloc(n, sizeof *pid);
    int gate[2];
    if (!pid)
        return -ENOMEM;
    if (pipe(gate) < 0) {
        free(pid);
        return -errno;
    }
    fflush(NULL);
    unsigned forked = 0;
    int err = 0;
    for (; forked < n; forked++) {
        p[forked].gate = gate[0];
        pid[forked] = fork();
        if (pid[forked] < 0) {
            err = -errno;
            break;
        }
        if (pid[forked] == 0) {
            close(gate[1]);
            party_thread(&p[forked]);
            _exit(__atomic_load_n(&p[forked].s->err, __ATOMIC_RELAXED) ? 1 : 0);
        }
    }
    int64_t t0 = bench_now_ns();
    close(gate[1]);
    for (unsigned i = 0; i < forked; i++) {
        int status;
        if ((waitpid(pid[i], &status, 0) < 0 || !WIFEXITED(status) ||
             WEXITSTATUS(status) != 0))
            fail(p[i].s, -ECHILD);
    }
    *ns = bench_now_ns() - t0;
    close(gate[0]);
    free(pid);
    return err;
}

/* ---------------------------------------------------------------------------
 * The workloads */

static int lock_init(struct lk_shared *s, bool weft, bool shared)
{
    if (weft)
        return weft_lock_init(&s->lock.weft);
    pthread_mutexattr_t attr;
    int err = pthread_mutexattr_init(&attr);
    if (!err && shared)
        err = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    if (!err)
        err = pthread_mutex_init(&s->lock.pthread, &attr);
    pthread_mutexattr_destroy(&attr);
    return -err;
}

static int lock_destroy(struct lk_shared *s, bool weft)
{
    if (weft)
        return weft_lock_destroy(&s->lock.weft);
    return -pthread_mutex_destroy(&s->lock.pthread);
}

/* Run the parties of cell c, the counter in s. */
static int run_parties(const struct bench_cell *c, struct lk_shared *s,
                       bool yield, int64_t *ns, struct bench_result *res)
{
    bool tasks = strcmp(c->mode, "weft") == 0;
    bool weft = tasks || strcmp(c->mode, "thread-weft") == 0;
    enum lk_kind kind = tasks  ? LK_WEFT_TASK
                        : weft ? LK_WEFT_THREAD
                               : LK_PTHREAD;
    struct lk_party *p = calloc(c->parties, sizeof *p);
    if (!p)
        return -ENOMEM;
    for (unsigned i = 0; i < c->parties; i++)
        p[i] = (struct lk_party){
            .s = s,
            .kind = kind,
            .me = i,
            .share = c->n / c->parties + (i < c->n % c->parties),
            .yield = yield,
        };
    int err = lock_init(s, weft, strcmp(c->mode, "process") == 0);
    if (err == 0) {
        if (tasks)
            err = run_tasks(c, p, ns, res);
        else if (strcmp(c->mode, "process") == 0)
            err = run_processes(p, c->parties, ns);
        else
            err = run_threads(p, c->parties, ns);
        int left = lock_destroy(s, weft); /* -EBUSY: held or waited on */
        if (err == 0 && left < 0)
            err = left;
    }
    free(p);
    return err;
}

static int run_cell(const struct bench_cell *c, bool yield,
                    struct bench_result *res)
{
    if (c->parties == 0)
        return -EINVAL;
    if (strcmp(c->mode, "weft") != 0 && strcmp(c->mode, "thread-weft") != 0 &&
        strcmp(c->mode, "thread") != 0 && strcmp(c->mode, "process") != 0)
        return -ENOTSUP;
    struct lk_shared *s = mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE,
                               MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (s == MAP_FAILED)
        return -errno;
    s->last = NO_PARTY;
    int64_t ns = 0;
    int err = run_parties(c, s, yield, &ns, res);
    if (err == 0 && s->err < 0)
        bench_perror(yield ? "lock_yield" : "lock", s->err);
    if (err == 0) {
        res->ns_per_op = c->n ? (double)ns / (double)c->n : 0;
        res->ok = s->err == 0 && s->counter == c->n;
        bench_extra(res, "counter=%llu handoff_pct=%.1f",
                    (unsigned long long)s->counter,
                    c->n ? 100.0 * (double)s->handoffs / (double)c->n : 0.0);
    }
    munmap(s, sizeof *s);
    return err;
}

static int lock_run(const struct bench_cell *c, struct bench_result *res)
{
    return run_cell(c, false, res);
}

static int lock_yield_run(const struct bench_cell *c, struct bench_result *res)
{
    return run_cell(c, true, res);
}

static bool is_python(const char *mode)
{
    return strcmp(mode, "asyncio") == 0 || strcmp(mode, "uvloop") == 0;
}

static uint64_t lock_default_n(const struct bench_cell *c, bool full)
{
    if (is_python(c->mode))
        return full ? 1000000 : 200000;
    return full ? 10000000 : 1000000;
}

static uint64_t lock_yield_default_n(const struct bench_cell *c, bool full)
{
    /* Every increment waits for the others to run: kernel wake-ups for
     * threads and processes, a round of the event loop for asyncio. */
    if (is_python(c->mode))
        return full ? 200000 : 20000;
    if (strcmp(c->mode, "thread") == 0 || strcmp(c->mode, "thread-weft") == 0 ||
        strcmp(c->mode, "process") == 0)
        return full ? 1000000 : 100000;
    return full ? 10000000 : 1000000;
}

static void lock_plan_group(struct bench_plan *plan, unsigned parties)
{
    char group[96];
    snprintf(group, sizeof group, "T=%u parties share one lock", parties);
    bool full = bench_plan_full(plan);
    unsigned w[3], nw = bench_plan_worker_counts(plan, w);
    struct bench_cell c = {.parties = parties};
    char note[64];

    c.mode = "weft";
    for (unsigned i = 0; i < nw; i++)
        bench_plan_add(plan, group, "weft", w[i], lock_default_n(&c, full), 0,
                       parties, NULL);
    snprintf(note, sizeof note, "%u plain threads on weft_lock", parties);
    bench_plan_add(plan, group, "thread-weft", parties,
                   lock_default_n(&c, full), 0, parties, note);
    snprintf(note, sizeof note, "%u threads on pthread_mutex_t", parties);
    bench_plan_add(plan, group, "thread", parties, lock_default_n(&c, full), 0,
                   parties, note);
    if (nw > 1 && parties != 2)
        bench_plan_add(plan, group, "thread", 2, lock_default_n(&c, full), 0, 2,
                       "2 threads on pthread_mutex_t, as many as weft's 2 "
                       "workers");
    snprintf(note, sizeof note, "%u processes, process-shared mutex", parties);
    bench_plan_add(plan, group, "process", parties, lock_default_n(&c, full), 0,
                   parties, note);
    for (unsigned i = 0; i < nw; i++)
        bench_plan_add(plan, group, "go", w[i], lock_default_n(&c, full), 0,
                       parties, "sync.Mutex");
    c.mode = "asyncio";
    bench_plan_add(plan, group, "asyncio", 1, lock_default_n(&c, full), 0,
                   parties, full ? "asyncio.Lock" : "smaller n, asyncio.Lock");
    bench_plan_note(plan, group,
                    "uvloop: left out, asyncio.Lock never reaches the event "
                    "loop here (weft-bench lock --mode uvloop runs it)");
    bench_plan_note(plan, group,
                    "threadpool, processpool: skipped, the same threads "
                    "and processes as thread and process");
}

static void lock_plan(struct bench_plan *plan)
{
    lock_plan_group(plan, 4);
    lock_plan_group(plan, 100);
}

static void lock_yield_plan(struct bench_plan *plan)
{
    const unsigned parties = 4;
    const char *group = "T=4 parties, the holder yields inside";
    bool full = bench_plan_full(plan);
    unsigned w[3], nw = bench_plan_worker_counts(plan, w);
    struct bench_cell c = {.parties = parties};
    const char *os_note = full ? "sched_yield" : "smaller n, sched_yield";

    c.mode = "weft";
    for (unsigned i = 0; i < nw; i++)
        bench_plan_add(plan, group, "weft", w[i],
                       lock_yield_default_n(&c, full), 0, parties,
                       "weft_yield");
    c.mode = "thread-weft";
    bench_plan_add(plan, group, "thread-weft", parties,
                   lock_yield_default_n(&c, full), 0, parties, os_note);
    c.mode = "thread";
    bench_plan_add(plan, group, "thread", parties,
                   lock_yield_default_n(&c, full), 0, parties, os_note);
    c.mode = "go";
    for (unsigned i = 0; i < nw; i++)
        bench_plan_add(plan, group, "go", w[i], lock_yield_default_n(&c, full),
                       0, parties, "runtime.Gosched");
    c.mode = "asyncio";
    bench_plan_add(plan, group, "asyncio", 1, lock_yield_default_n(&c, full), 0,
                   parties,
                   full ? "asyncio.sleep(0)" : "smaller n, asyncio.sleep(0)");
    bench_plan_note(plan, group,
                    "process, uvloop: left out to keep the run short "
                    "(weft-bench lock_yield --mode M runs them)");
}

const struct bench_workload bench_lock = {
    .name = "lock",
    .op = "ns per increment",
    .columns = "handoff_pct",
    .run = lock_run,
    .default_n = lock_default_n,
    .plan = lock_plan,
};

const struct bench_workload bench_lock_yield = {
    .name = "lock_yield",
    .op = "ns per increment",
    .columns = "handoff_pct",
    .run = lock_yield_run,
    .default_n = lock_yield_default_n,
    .plan = lock_yield_plan,
};
