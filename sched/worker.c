/* The worker loop: where a worker thread finds its next task, runs it, and
 * sleeps when there is none.
 *
 * Search order, each round:
 *   1. every 61st round, the injection queue, then the yield list, first:
 *      neither can be starved by a worker that keeps spawning locally;
 *      the same round polls the reactor (io/reactor.c) without blocking;
 *   2. the LIFO slot: the task this worker woke last, for message-passing
 *      latency. At most WEFT__LIFO_MAX runs in a row, after which it goes
 *      to the injection queue, so two tasks waking each other cannot starve
 *      the rest;
 *   3. the own deque, newest first (fork-join locality);
 *   4. the injection queue, a batch at a time;
 *   5. the yield list: tasks that called weft_yield, in FIFO order, after
 *      every other ready task, those woken by timers and other threads
 *      included (asyncio's sleep(0) goes behind what its loop made ready);
 *   5b. the reactor, polled without blocking: tasks whose fds are ready;
 *   6. stealing (a "spinning" worker): every other worker's deque from a
 *      random start, half of what the victim holds, and the injection
 *      queue, for a few rounds;
 *   7. parking on a futex.
 *
 * Spinning and parking. rt->nr_spinning counts the workers that are
 * looking for work and that will, before they sleep, look at every queue
 * once more. At most half the workers spin at once (Go and Tokio bound them
 * the same way): more would only burn CPU stealing from each other.
 *
 * Making work visible to others (a spawn, a steal batch, a wake from another
 * thread) calls weft__notify(), which wakes one parked worker, and only
 * when no worker is spinning: a spinner will find the work. A spinner that
 * finds work and was the last spinner wakes the next parked worker, so
 * wake-ups chain one at a time instead of a thundering herd.
 *
 * No lost wake-up. A producer does P1 (publish the task), P2 (a sequentially
 * consistent fence), P3 (read nr_parked and nr_spinning, then both again
 * under idle_lock).
 * A worker going to sleep does W1 (leave the spinning count; announce itself
 * in rt->idle under idle_lock), W2 (the same kind of fence), W3 (look at
 * every queue again), and sleeps only if W3 found nothing. The two fences
 * order P1 before P3 and W1 before W3 in one total order, so either P3 sees
 * the worker (not spinning, or parked: it is woken) or W3 sees the task.
 * If P3 sees another worker still spinning, that worker's own W1-W3 come
 * later in that order and see the task. A worker woken by a producer is
 * counted as spinning by that producer (under idle_lock), so the count
 * never drops to zero while a woken worker has yet to look. The futex
 * word is bumped under idle_lock too, so a worker reads a fresh sequence
 * number for each sleep and no stale bump wakes a later one.
 *
 * Rejected: a condition variable per runtime (wakes take a shared lock and
 * cannot pick one specific sleeper); waking a worker on every spawn (a
 * syscall on the spawn path and a herd on bursts); ck_ec (a fine futex
 * wrapper, but the protocol above needs the announcement and the sleep to
 * be separate steps, which a plain futex gives directly).
 *
 * Switching out. A task that suspends switches straight to the next ready
 * task of its worker when there is one (park_task, weft_yield), else to the
 * worker's scheduler context. What must wait until its context is saved,
 * it leaves in w->out and w->op, and whatever runs next on the worker does
 * it first (after_switch): the scheduler, or the task switched to.
 *
 * Parking a task (the hand-shake of sched/sched.h's waiter): a task that
 * waits sets park_state = PARKING, publishes its waiter, and switches away
 * with WEFT__OP_PARK; after the switch, finish_park CASes PARKING ->
 * PARKED. A waker exchanges park_state with RUN: if it saw PARKED, the task
 * is fully switched out and the waker enqueues it; if it saw PARKING, the
 * CAS in finish_park fails and finish_park requeues the task itself.
 * Either way exactly one party enqueues it, and never before its context is
 * saved.
 */
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "io/reactor.h"
#include "sched/alloc.h"
#include "sched/context.h"
#include "sched/internal.h"

#ifdef WEFT_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef WEFT_TSAN
#include <sanitizer/tsan_interface.h>
#endif

#define WEFT__LIFO_MAX     3
#define WEFT__FAIR_TICKS   61
#define WEFT__SPIN_ROUNDS  3
#define WEFT__INJECT_BATCH 32u
#define WEFT__STEAL_BATCH  32u

__thread struct weft__worker *weft__tls_worker;
__thread weft_task *const *weft__tls_current;

#ifdef WEFT_TSAN
__attribute__((noinline)) struct weft__worker *weft__tls_worker_reload(void)
{
    return weft__tls_worker;
}
#endif

/* --------------------------------------------------------------------------
 * Small utilities
 */

void weft__futex_wait(uint32_t *addr, uint32_t val)
{
    syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

void weft__futex_wait_until(uint32_t *addr, uint32_t val, int64_t deadline_ns)
{
    if (deadline_ns == WEFT__NEVER) {
        weft__futex_wait(addr, val);
        return;
    }
    /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time. */
    struct timespec ts = {.tv_sec = deadline_ns / 1000000000,
                          .tv_nsec = deadline_ns % 1000000000};
    syscall(SYS_futex, addr, FUTEX_WAIT_BITSET_PRIVATE, val, &ts, NULL,
            FUTEX_BITSET_MATCH_ANY);
}

void weft__futex_wake(uint32_t *addr, int n)
{
    syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

int64_t weft__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void weft__panic(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("weft: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

static inline void set_where(weft_task *t, int worker,
                             enum weft_task_state state)
{
    /* Relaxed: only weft_all_tasks snapshots (and weft_join's guess
     * whether t has started) read these, and a snapshot is allowed to be a
     * moment old. */
    weft__store_rlx_u32(&t->where, weft__where_encode(worker, state));
}

/* t becomes ready: READY, and if its last run was picked for a delay
 * sample (STAMP), stamped and SAMPLED (stats.c). Relaxed as in set_where:
 * only the party that makes t ready writes `where` now, and the worker
 * that runs t reads it after the queue or park hand-off that gives it t,
 * which orders this store (and the stamp) before that read. */
static inline void set_ready(weft_task *t, int worker)
{
    uint32_t where = weft__load_rlx_u32(&t->where);
    uint32_t sampled = 0;
    if (WEFT__OBSERVED(where & WEFT__WHERE_STAMP))
        sampled = weft__delay_stamp(t);
    weft__store_rlx_u32(&t->where,
                        weft__where_encode(worker, WEFT_TASK_READY) | sampled);
}

/* w starts a run of t: counts it, and, if the run is picked for a delay
 * sample, or t's wait was one, or w watches its runs (next_observe 0),
 * lets stats.c see it. Returns the flag for t's RUNNING `where`. Before
 * t->stack is set if t has not started (its stamp is read from
 * spawn_ns). Relaxed load of `where`: see set_ready. */
static inline uint32_t begin_run(struct weft__worker *w, weft_task *t)
{
    uint64_t n = weft__load_rlx_u64(&w->counters.runs) + 1;
    weft__store_rlx_u64(&w->counters.runs, n); /* the owner's counter */
    uint32_t where = weft__load_rlx_u32(&t->where);
    if (WEFT__OBSERVED((where & WEFT__WHERE_SAMPLED) || n >= w->next_observe))
        return weft__run_observed(w, t, where, n);
    return 0;
}

/* The running task of w changes to t (NULL: the scheduler). Only when w
 * watches its runs (WEFT_SLOW_TASK_MS, WEFT_TRACE) does this read the
 * clock. */
static inline void set_current(struct weft__worker *w, weft_task *t)
{
    if (WEFT__OBSERVED(w->watch))
        weft__watch_switch(w, t);
    w->current = t;
}

/* Tell the other workers about work this one made stealable. With one
 * worker there is nobody to tell: the caller itself will run it. */
static inline void notify_peers(weft_runtime *rt)
{
    if (rt->nworkers > 1)
        weft__notify(rt);
}

static uint64_t next_random(struct weft__worker *w)
{
    /* xorshift64: victim choice needs speed, not quality. */
    uint64_t x = w->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return w->rng = x;
}

/* --------------------------------------------------------------------------
 * Switching. The sanitizer builds tell ASan which stack is about to run
 * (so it does not report the other stack's frames) and TSan which fiber.
 */

/* Save the running context in *save and resume task `to`. Used by the
 * scheduler (save = its own context) and by a task's direct hand-off to
 * the next one (save = its own: switch_to_task). */
static void switch_into(void **save, weft_task *to)
{
#ifdef WEFT_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(&fake, to->stack->lo, to->stack->size);
#endif
#ifdef WEFT_TSAN
    __tsan_switch_to_fiber(to->stack->tsan_fiber, 0);
#endif
    weft__ctx_switch(save, to->sp);
#ifdef WEFT_ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
}

static void finish_park(struct weft__worker *w, weft_task *t);

static void local_push(struct weft__worker *w, weft_task *t);

/* Run first by whatever context runs on w after a switch, the scheduler
 * (run_task) or a task resumed or started on w (on its own stack): the
 * task that switched out has its context saved by now, so do what it left
 * to do (w->out, w->op). */
static inline __attribute__((always_inline)) void
after_switch(struct weft__worker *w)
{
    weft_task *t = w->out;
    if (!t)
        return;
    w->out = NULL;
    switch (w->op) {
    case WEFT__OP_PARK:
        finish_park(w, t);
        break;
    case WEFT__OP_YIELD:
        local_push(w, t);
        notify_peers(w->rt);
        break;
    case WEFT__OP_EXIT:
        weft__task_finish(w, t);
        break;
    }
}

/* Called on t's stack, which switches out for `op`. Returns when t is
 * resumed (never for WEFT__OP_EXIT), possibly on another worker: nothing
 * read from the worker before the switch is reused after it. */
static void switch_to_sched(struct weft__worker *w, weft_task *t,
                            enum weft__op op)
{
    w->out = t;
    w->op = op;
#ifdef WEFT_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(op == WEFT__OP_EXIT ? NULL : &fake,
                                   w->sched_stack_lo, w->sched_stack_size);
#endif
#ifdef WEFT_TSAN
    __tsan_switch_to_fiber(w->tsan_sched_fiber, 0);
#endif
    weft__ctx_switch(&t->sp, w->sched_sp);
#ifdef WEFT_ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
    after_switch(weft__tls_worker_reload());
}

/* Called on t's stack: switch straight to next (made current by
 * prepare_run), with w->out set if anything is left to do for t. Returns
 * when t is resumed, possibly on another worker. */
static inline void switch_to_task(weft_task *t, weft_task *next)
{
    switch_into(&t->sp, next);
    after_switch(weft__tls_worker_reload());
}

static void task_main(void *arg)
{
    weft_task *t = arg;
#ifdef WEFT_ASAN
    __sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
    after_switch(weft__tls_worker_reload());
    weft_fn fn = t->fn;
    t->parent = NULL; /* the same field: see internal.h */
    t->arg = fn(t->arg);
    weft__task_returned(t);
    switch_to_sched(weft__tls_worker_reload(), t, WEFT__OP_EXIT);
    weft__panic("task_main: finished task %llu was resumed",
                (unsigned long long)t->id);
}

/* --------------------------------------------------------------------------
 * Local queues (owner only)
 */

/* Push onto the own deque, growing it when full. Only if growing fails
 * (out of memory) does t go to the injection queue, which never fails.
 * The caller notifies. */
static void local_push(struct weft__worker *w, weft_task *t)
{
    if (WEFT_LIKELY(weft__deque_push(&w->deque, t)))
        return;
    if (weft__deque_grow(&w->deque) == 0 && weft__deque_push(&w->deque, t)) {
        weft__count(&w->counters.grows, 1);
        return;
    }
    weft__inject_push(&w->rt->inject, t, t, 1);
}

/* Take a batch from the injection queue: run the first, keep the rest in
 * the own deque, where idle workers can steal them. */
static __attribute__((noinline)) weft_task *
inject_take_slow(struct weft__worker *w)
{
    weft_runtime *rt = w->rt;
    uint64_t want = weft__load_rlx_u64(&rt->inject.len) / rt->nworkers + 1;
    if (want > WEFT__INJECT_BATCH)
        want = WEFT__INJECT_BATCH;
    uint64_t n;
    weft_task *t = weft__inject_pop(&rt->inject, want, &n);
    if (!t)
        return NULL;
    weft__count(&w->counters.inject_pops, n);
    for (weft_task *rest = t->next; rest;) {
        weft_task *next = rest->next;
        local_push(w, rest);
        rest = next;
    }
    if (n > 1)
        notify_peers(rt);
    return t;
}

static inline weft_task *inject_take(struct weft__worker *w)
{
    if (weft__inject_is_empty(&w->rt->inject))
        return NULL;
    return inject_take_slow(w);
}

/* Whether a task other than the LIFO slot's is ready here: only then can
 * the LIFO slot starve anyone. */
static bool other_local_work(const struct weft__worker *w)
{
    return !weft__deque_is_empty_owner(&w->deque) ||
           !weft__inject_is_empty(&w->rt->inject) || w->yields.head;
}

/* Poll the reactor without blocking. The tasks whose fds are ready go to
 * the injection queue, in the order the kernel reported them: FIFO behind
 * every task ready already (see w->collect). Whether there were any. */
static inline bool poll_io(struct weft__worker *w)
{
    if (WEFT_LIKELY(!weft__reactor_has_fds(w->rt->reactor)))
        return false;
    struct weft__batch b = {.rt = w->rt};
    w->collect = &b;
    weft__reactor_poll(w->rt->reactor);
    w->collect = NULL;
    if (!b.n)
        return false;
    weft__batch_flush(&b);
    return true;
}

static inline __attribute__((always_inline)) weft_task *
find_local(struct weft__worker *w)
{
    weft_task *t;
    if (WEFT_UNLIKELY(--w->fair_countdown == 0)) {
        w->fair_countdown = WEFT__FAIR_TICKS;
        /* Tasks whose fds became ready while this worker was busy: the
         * reactor thread steps aside while no worker is parked, so a
         * worker that never runs out of work must look itself. */
        poll_io(w);
        if ((t = inject_take(w)) || (t = weft__task_list_pop(&w->yields)))
            return t;
    }
    if (w->lifo) {
        t = w->lifo;
        w->lifo = NULL;
        if (w->lifo_streak++ < WEFT__LIFO_MAX || !other_local_work(w))
            return t;
        /* Capped: to the injection queue, behind the other local tasks
         * (the deque's bottom would hand it straight back), where an idle
         * worker can take it if this one stays busy. */
        weft__inject_push(&w->rt->inject, t, t, 1);
        notify_peers(w->rt);
    }
    w->lifo_streak = 0;
    if ((t = weft__deque_pop(&w->deque)) || (t = inject_take(w)))
        return t;
    return weft__task_list_pop(&w->yields);
}

/* --------------------------------------------------------------------------
 * Stealing and the idle protocol
 */

static weft_task *steal_from(struct weft__worker *w, struct weft__worker *v)
{
    weft__count(&w->counters.steals_tried, 1);
    for (int tries = 0; tries < 4; tries++) {
        void *x = weft__deque_steal(&v->deque);
        if (x == WEFT__STEAL_EMPTY)
            return NULL;
        if (x == WEFT__STEAL_RETRY)
            continue;
        /* Take up to half of what is left, into our own deque. */
        size_t more = weft__deque_len(&v->deque) / 2, got = 1;
        if (more > WEFT__STEAL_BATCH)
            more = WEFT__STEAL_BATCH;
        while (more--) {
            void *y = weft__deque_steal(&v->deque);
            if (y == WEFT__STEAL_EMPTY || y == WEFT__STEAL_RETRY)
                break;
            local_push(w, y);
            got++;
        }
        weft__count(&w->counters.steals, got);
        if (WEFT__OBSERVED(w->trace))
            weft__trace_steal(w, v->index, got);
        return x;
    }
    return NULL;
}

static weft_task *steal_any(struct weft__worker *w)
{
    weft_runtime *rt = w->rt;
    unsigned n = rt->nworkers;
    unsigned start = (unsigned)(next_random(w) % n);
    for (unsigned i = 0; i < n; i++) {
        struct weft__worker *v = rt->workers[(start + i) % n];
        if (v == w)
            continue;
        weft_task *t = steal_from(w, v);
        if (t)
            return t;
    }
    return inject_take(w);
}

/* Stop counting this worker as spinning. A last spinner that found work
 * wakes another, which looks for the rest. */
static void stop_spinning(struct weft__worker *w, bool found)
{
    if (!w->spinning)
        return;
    w->spinning = false;
    /* Seq RMW only because ck_pr has no weaker one: what the count orders
     * is carried by the fences W2 (park) and P2 (weft__notify). */
    uint32_t before = weft__faa_seq_u32(&w->rt->nr_spinning, (uint32_t)-1);
    if (found && before == 1)
        weft__notify(w->rt);
}

static weft_task *search(struct weft__worker *w)
{
    weft_runtime *rt = w->rt;
    if (rt->nworkers == 1)
        return NULL;
    if (!w->spinning) {
        /* Relaxed: the bound on spinners is a heuristic; a stale count lets
         * one too many or too few spin this round. */
        uint32_t s = weft__load_rlx_u32(&rt->nr_spinning);
        if (2 * s >= rt->nworkers)
            return NULL;
        /* Seq RMW only because ck_pr has no weaker one: the fences W2 and
         * P2 carry the protocol; this spinner looks at every queue again
         * before it parks. */
        weft__faa_seq_u32(&rt->nr_spinning, 1);
        w->spinning = true;
    }
    for (int round = 0; round < WEFT__SPIN_ROUNDS; round++) {
        weft_task *t = steal_any(w);
        if (t)
            return t;
        for (int i = 0; i < 32; i++)
            weft__cpu_relax();
    }
    return NULL;
}

/* Anything another worker or thread may have published for us to run. */
static bool work_visible(const struct weft__worker *w)
{
    weft_runtime *rt = w->rt;
    if (!weft__inject_is_empty(&rt->inject) || weft__load_rlx_u32(&rt->stop))
        return true;
    for (unsigned i = 0; i < rt->nworkers; i++)
        if (weft__deque_len(&rt->workers[i]->deque) > 0)
            return true;
    return false;
}

/* Take this worker out of rt->idle after it found work while announcing
 * itself. If a notifier got there first, it counted us as spinning. */
static void unpark_self(struct weft__worker *w)
{
    weft_runtime *rt = w->rt;
    pthread_mutex_lock(&rt->idle_lock);
    /* Relaxed: under idle_lock, which every writer holds. */
    uint32_t n = weft__load_rlx_u32(&rt->nr_parked);
    for (unsigned i = 0; i < n; i++) {
        if (rt->idle[i] == w->index) {
            rt->idle[i] = rt->idle[n - 1];
            /* Relaxed: see park(). */
            weft__store_rlx_u32(&rt->nr_parked, n - 1);
            pthread_mutex_unlock(&rt->idle_lock);
            return;
        }
    }
    pthread_mutex_unlock(&rt->idle_lock);
    w->spinning = true;
}

static void park(struct weft__worker *w)
{
    weft_runtime *rt = w->rt;
    stop_spinning(w, false);
    pthread_mutex_lock(&rt->idle_lock);
    /* Relaxed: park_futex is bumped only under idle_lock. */
    uint32_t seq = weft__load_rlx_u32(&w->park_futex);
    /* Relaxed: under idle_lock, which every writer holds. */
    uint32_t n = weft__load_rlx_u32(&rt->nr_parked);
    rt->idle[n] = w->index;
    /* Relaxed: producers read nr_parked after their fence P2, and this
     * store is ordered before the re-check by the fence W2 below. */
    weft__store_rlx_u32(&rt->nr_parked, n + 1);
    pthread_mutex_unlock(&rt->idle_lock);
    /* W2 of the protocol above: the announcement before the re-check.
     * Pairs with the fence in weft__notify (P2). */
    weft__fence_seq();
    if (work_visible(w)) {
        unpark_self(w);
        return;
    }
    /* Asleep, this worker no longer takes fd events: the reactor thread
     * must (io/reactor.c, "Armed"; the fence above is its hand-shake). */
    weft__reactor_arm(rt->reactor);
    if (WEFT_UNLIKELY(weft__load_rlx_u32(&rt->freeing))) {
        /* P3 of the shutdown hand-shake (runtime.c): the tasks this
         * worker finished are counted; let the freeing thread look. */
        weft__faa_seq_u32(&rt->exit_futex, 1);
        weft__futex_wake(&rt->exit_futex, 1);
    }
    weft__count(&w->counters.parks, 1);
    /* Acquire: pairs with the release bump in notify_slow and
     * weft__worker_stop_all, so what they published is visible. */
    while (weft__load_acq_u32(&w->park_futex) == seq)
        weft__futex_wait(&w->park_futex, seq);
    /* Our waker popped us from rt->idle and counted us as spinning. */
    w->spinning = true;
}

static __attribute__((noinline)) void notify_slow(weft_runtime *rt)
{
    pthread_mutex_lock(&rt->idle_lock);
    /* Relaxed: under idle_lock, which every writer holds. */
    uint32_t n = weft__load_rlx_u32(&rt->nr_parked);
    /* Relaxed: P3's second look, under idle_lock, after the fence P2. */
    if (n == 0 || weft__load_rlx_u32(&rt->nr_spinning) != 0) {
        pthread_mutex_unlock(&rt->idle_lock);
        return;
    }
    struct weft__worker *v = rt->workers[rt->idle[n - 1]];
    /* Relaxed: see park(). */
    weft__store_rlx_u32(&rt->nr_parked, n - 1);
    /* Seq RMW only because ck_pr has no weaker one: counted as spinning
     * before it wakes, so the count never drops to 0 while it has yet to
     * look (the protocol above). */
    weft__faa_seq_u32(&rt->nr_spinning, 1);
    /* Release, under idle_lock: see park(). */
    weft__store_rel_u32(&v->park_futex, v->park_futex + 1);
    pthread_mutex_unlock(&rt->idle_lock);
    weft__futex_wake(&v->park_futex, 1);
    struct weft__worker *self = weft__tls_worker;
    if (self && self->rt == rt)
        weft__count(&self->counters.wakeups, 1);
}

void weft__notify(weft_runtime *rt)
{
    /* P2 of the protocol above: the work published by the caller before
     * the reads of the idle counts. Pairs with the fence in park (W2). */
    weft__fence_seq();
    /* nr_parked first: it is the one that is nearly always 0 while the
     * workers are busy, and its line is not written by every steal. */
    if (weft__load_rlx_u32(&rt->nr_parked) == 0 ||
        weft__load_rlx_u32(&rt->nr_spinning) != 0)
        return;
    notify_slow(rt);
}

/* --------------------------------------------------------------------------
 * Running tasks
 */

/* t's context is saved: let its waker have it. */
static void finish_park(struct weft__worker *w, weft_task *t)
{
    /* WAITING, keeping STAMP for the wake (set_ready). Relaxed: t's own
     * worker is the only writer now. */
    uint32_t stamp = weft__load_rlx_u32(&t->where) & WEFT__WHERE_STAMP;
    weft__store_rlx_u32(&t->where,
                        weft__where_encode((int)w->index, WEFT_TASK_WAITING) |
                            stamp);
    /* Seq CAS: publishes the saved context (t->sp) to the waker's
     * exchange in weft__waiter_wake, which then enqueues t. If it fails,
     * the waker came first and left RUN: requeue t here. */
    if (!weft__cas_seq_u32(&t->park_state, WEFT__PARKING, WEFT__PARKED)) {
        /* Onto the deque, not the LIFO slot: the task that runs next here
         * (when called on a task's stack, after park_task's direct
         * switch) may keep the worker for long, and an idle worker can
         * steal from the deque. */
        set_ready(t, (int)w->index);
        weft__task_submit(t);
    }
}

/* Make t the running task of w, giving it a stack if it never ran.
 * Returns false, having finished t, if t was cancelled before it started:
 * it never runs. */
static bool prepare_run(struct weft__worker *w, weft_task *t)
{
    if (WEFT_UNLIKELY(!t->stack && weft__task_cancelled_before_start(t))) {
        weft__task_finish(w, t);
        return false;
    }
    uint32_t stamp = begin_run(w, t);
    if (!t->stack) {
        t->stack = weft__stack_acquire(&w->rt->stacks, &w->stacks,
                                       weft__task_stack_size(t));
        if (!t->stack)
            weft__panic("no memory for the stack of task %llu (%zu bytes): "
                        "%s; lower the number of live tasks or raise "
                        "vm.max_map_count",
                        (unsigned long long)t->id, weft__task_stack_size(t),
                        strerror(errno));
        t->sp = weft__ctx_make(weft__stack_top(t->stack), task_main, t);
    }
    /* No watch here: when watching, begin_run made it. */
    w->current = t;
    /* Relaxed: see set_where. */
    weft__store_rlx_u32(&t->where,
                        weft__where_encode((int)w->index, WEFT_TASK_RUNNING) |
                            stamp);
    weft__count(&w->counters.switches, 1);
    return true;
}

static void run_task(struct weft__worker *w, weft_task *t)
{
    if (!prepare_run(w, t))
        return;
    switch_into(&w->sched_sp, t);
    /* Back from the task that switched out last, not necessarily t: tasks
     * may have switched among themselves (weft_yield, park_task), or t may
     * have run a child inline that then suspended (weft__join_run_inline).
     * It left itself in w->out (switch_to_sched). */
    set_current(w, NULL);
    weft__count(&w->counters.switches, 1);
    after_switch(w);
}

static void *worker_main(void *arg)
{
    struct weft__worker *w = arg;
    weft_runtime *rt = w->rt;
    weft__tls_worker = w;
    weft__tls_current = &w->current;
    w->altstack = weft__stack_altstack_new();
#ifdef WEFT_ASAN
    pthread_attr_t attr;
    void *lo;
    pthread_getattr_np(pthread_self(), &attr);
    pthread_attr_getstack(&attr, &lo, &w->sched_stack_size);
    pthread_attr_destroy(&attr);
    w->sched_stack_lo = lo;
#endif
#ifdef WEFT_TSAN
    w->tsan_sched_fiber = __tsan_get_current_fiber();
#endif
    while (!weft__load_rlx_u32(&rt->stop)) {
        weft_task *t = find_local(w);
        if (!t) {
            /* Out of local work: what the fds have made ready comes first,
             * run here with no hop through the reactor thread. */
            if (poll_io(w))
                continue;
            t = search(w);
        }
        if (!t) {
            park(w);
            continue;
        }
        stop_spinning(w, true);
        run_task(w, t);
    }
    weft__stack_cache_drain(&rt->stacks, &w->stacks);
    weft__stack_altstack_free(w->altstack);
    weft__tls_worker = NULL;
    weft__tls_current = NULL;
    return NULL;
}

/* --------------------------------------------------------------------------
 * Making tasks runnable
 */

/* A producer that is not a worker of rt (a plain thread, or a task of
 * another runtime) publishes t and notifies while holding the injection
 * lock. No worker can take t before the lock is released, so t cannot run,
 * finish and let weft_runtime_free return while this thread still uses rt;
 * after the unlock it touches neither. (Workers of rt need no such care:
 * weft_runtime_free joins them before it frees anything.) Lock order:
 * inject.lock, then idle_lock inside weft__notify. */
static void inject_from_outside(weft_runtime *rt, weft_task *first,
                                weft_task *last, uint64_t n)
{
    pthread_mutex_lock(&rt->inject.lock);
    weft__inject_push_locked(&rt->inject, first, last, n);
    weft__notify(rt);
    pthread_mutex_unlock(&rt->inject.lock);
}

__thread struct weft__batch *weft__tls_batch;

void weft__batch_flush(struct weft__batch *b)
{
    if (!b->tasks.head)
        return;
    inject_from_outside(b->rt, b->tasks.head, b->tasks.tail, b->n);
    b->tasks.head = b->tasks.tail = NULL;
    b->n = 0;
}

void weft__task_enqueue(weft_task *t)
{
    struct weft__worker *w = weft__tls_worker;
    weft_runtime *rt = t->rt;
    if (w && w->rt == rt) {
        if (WEFT_UNLIKELY(w->collect)) { /* poll_io */
            set_ready(t, -1);
            weft__task_list_append(&w->collect->tasks, t, t);
            w->collect->n++;
            return;
        }
        set_ready(t, (int)w->index);
        /* The LIFO slot: the woken task runs next on this worker. The task
         * it displaces becomes stealable. */
        weft_task *prev = w->lifo;
        w->lifo = t;
        if (prev) {
            local_push(w, prev);
            notify_peers(rt);
        }
        return;
    }
    set_ready(t, -1);
    /* Only a thread that is no worker sets weft__tls_batch. */
    struct weft__batch *b = weft__tls_batch;
    if (b && b->rt == rt) {
        /* A thread collecting wake-ups (the timer thread): one push and
         * one notify for the lot, in weft__batch_flush. */
        weft__task_list_append(&b->tasks, t, t);
        b->n++;
        return;
    }
    inject_from_outside(rt, t, t, 1);
}

void weft__task_submit(weft_task *t)
{
    struct weft__worker *w = weft__tls_worker;
    weft_runtime *rt = t->rt;
    if (w && w->rt == rt) {
        local_push(w, t);
        notify_peers(rt);
        return;
    }
    inject_from_outside(rt, t, t, 1);
}

/* --------------------------------------------------------------------------
 * Fork-join inline execution
 *
 * A task joining a child that has not started would park, and the worker
 * would then start the child on a fresh stack: four switches and a stack
 * for work the joiner could do itself. Instead the joiner looks for the
 * child among the few newest entries of its worker's deque (a fork-join
 * parent spawns its children there and joins them soon after) and, if it is
 * there, takes it out and calls it right here on the joiner's stack (TBB
 * and Cilk do the same). Taking the entry out of the deque removes the only
 * queue entry the child has, so nobody else can also run it.
 *
 * Only the task being joined runs inline, never a sibling: the joiner
 * cannot go on before that task ends anyway, so running it here changes
 * nothing the program can observe, while a sibling that suspended on the
 * joiner's stack would hold the joiner up (and deadlock a joiner that the
 * sibling waits for). The entries popped on the way are pushed back in
 * their order.
 *
 * The child keeps its identity: weft_current() is the child while it runs,
 * and if it suspends, the worker switches out the child (its context is
 * saved in the child, on the borrowed stack) and later resumes it, possibly
 * on another worker; when it returns, the joiner continues from there.
 *
 * Stack room: the child runs only if the joiner's stack has at least the
 * child's own stack size free, so every task still gets the stack it asked
 * for. Default stacks reserve twice their size (stack.c) to leave that room.
 */

#define WEFT__INLINE_SEARCH 4 /* deque entries a join looks through */

static bool stack_room(const weft_task *self, const weft_task *child)
{
    size_t need = weft__task_stack_size(child);
    /* The frame address, not a local's: under ASan a local may live on a
     * separate fake stack. */
    char *here = __builtin_frame_address(0);
    return (size_t)(here - self->stack->lo) > need + 4096;
}

/* Returns whether self is still c's only joiner (see
 * weft__task_finish_inline). */
static bool run_inline(struct weft__worker *w, weft_task *self, weft_task *c)
{
    /* An interrupted joiner cancels what it joins (weft_join), and a
     * cancelled task never starts. Only self's own state is looked at
     * here: walking self's inline parents on every inline run made
     * fib(30) 2.5x slower. Their interrupts reach c at its first
     * suspension point instead (cancel.c). */
    if (WEFT_UNLIKELY(weft__own_interrupt(self)))
        (void)weft_cancel(c);
    if (WEFT_UNLIKELY(weft__task_cancelled_before_start(c)))
        return weft__task_finish_inline(w, c);
    /* c's wait since its spawn, if timed (stats.c), while c has not
     * started. Inline runs are not picked for samples themselves (nor is
     * self's STAMP kept): this is the fork-join path, where each
     * instruction shows. Relaxed: see set_ready. */
    if (WEFT__OBSERVED(weft__load_rlx_u32(&c->where) & WEFT__WHERE_SAMPLED))
        (void)weft__run_observed(w, c, WEFT__WHERE_SAMPLED, 0);
    c->stack = self->stack; /* borrowed: marks c as started */
    weft_fn fn = c->fn;
    /* The same field: c's suspension points look at self's interrupts,
     * and c's waits are reachable from self's (cancel.c). */
    c->parent = self;
    weft__inline_adopt(c, self);
    set_where(self, (int)w->index, WEFT_TASK_WAITING);
    set_where(c, (int)w->index, WEFT_TASK_RUNNING);
    set_current(w, c);
    weft__count(&w->counters.runs, 1);
    c->arg = fn(c->arg);
    weft__task_returned(c);
    w = weft__tls_worker_reload(); /* c may have suspended and moved */
    set_current(w, self);
    set_where(self, (int)w->index, WEFT_TASK_RUNNING);
    c->stack = NULL;
    return weft__task_finish_inline(w, c);
}

int weft__join_run_inline(weft_task *target)
{
    struct weft__worker *w = weft__tls_worker;
    weft_task *self = w->current;
    weft_task *held[WEFT__INLINE_SEARCH];
    unsigned n = 0;
    weft_task *found = NULL;
    while (n < WEFT__INLINE_SEARCH) {
        weft_task *c = weft__deque_pop(&w->deque);
        if (!c)
            break;
        if (c == target) {
            found = c;
            break;
        }
        held[n++] = c;
    }
    /* Never started (a queued resume of a started task has a stack), the
     * joiner's stack has room, and no other party waits for it: run it.
     * Otherwise it goes back too. Relaxed: another party that starts
     * waiting after this look is caught when c finishes (task.c). */
    bool put_back = n > 0;
    if (found && (found->stack || !stack_room(self, found) ||
                  weft__load_rlx_ptr(&found->joiner) != NULL)) {
        weft__deque_push(&w->deque, found);
        found = NULL;
        put_back = true;
    }
    /* Oldest first, so the deque's order is as before. The pushes cannot
     * fail: the pops just made room. A worker that looked while they were
     * out may have gone to sleep, so notify. */
    while (n > 0)
        weft__deque_push(&w->deque, held[--n]);
    if (put_back)
        notify_peers(w->rt);
    if (!found)
        return 0;
    return run_inline(w, self, found) ? 1 : -1;
}

/* --------------------------------------------------------------------------
 * Suspending: a task switches straight to the next ready task of its
 * worker, by the scheduler's own rules (find_local), not through the
 * scheduler: one context switch instead of two.
 */

/* The next ready task of w, made current (prepare_run), or NULL. */
static inline weft_task *next_ready(struct weft__worker *w)
{
    weft_task *next;
    while ((next = find_local(w)) && !prepare_run(w, next))
        ; /* next was cancelled before it started: it is finished */
    return next;
}

/* Whether another worker of w's runtime is parked or looking for work.
 * Relaxed loads: a stale 0 only leaves a yielding task on the yield list
 * until the next task here suspends, which costs latency, not a lost
 * wake-up. */
static bool worker_idle_elsewhere(const struct weft__worker *w)
{
    const weft_runtime *rt = w->rt;
    return rt->nworkers > 1 &&
           (weft__load_rlx_u32((uint32_t *)&rt->nr_parked) != 0 ||
            weft__load_rlx_u32((uint32_t *)&rt->nr_spinning) != 0);
}

int weft_yield(void)
{
    struct weft__worker *w = weft__tls_worker;
    weft_task *t = w ? w->current : NULL;
    if (!t)
        return -EPERM;
    /* None: no other task is ready here, so carry on, as asyncio's
     * sleep(0) does on an empty ready queue. */
    weft_task *next = next_ready(w);
    if (!next) {
        /* Still a suspension point: a slow task report times the run
         * from here on. */
        if (WEFT__OBSERVED(w->slow_ns))
            weft__slow_restart(w);
        return weft__task_interrupt_of(t);
    }
    set_ready(t, (int)w->index);
    /* t goes on the yield list, which only this thread reads, so nobody
     * can resume t before its context is saved. But no other worker can
     * take it from there either: if one is idle while next never suspends,
     * t would wait for nothing. Then t goes onto the deque instead, once
     * its context is saved (WEFT__OP_YIELD), and an idle worker is woken
     * to steal it. */
    if (WEFT_UNLIKELY(worker_idle_elsewhere(w))) {
        w->out = t;
        w->op = WEFT__OP_YIELD;
    } else {
        weft__task_list_append(&w->yields, t, t);
    }
    switch_to_task(t, next);
    return weft__task_interrupt_of(t);
}

/* Park t, the running task. t's park is finished (finish_park) by whatever
 * runs next here, once t's context is saved; until then no waker can
 * enqueue t (park_state is PARKING). */
static void park_task(weft_task *t)
{
    struct weft__worker *w = weft__tls_worker;
    weft_task *next = next_ready(w);
    if (!next) {
        switch_to_sched(w, t, WEFT__OP_PARK);
        return;
    }
    w->out = t;
    w->op = WEFT__OP_PARK;
    switch_to_task(t, next);
}

/* --------------------------------------------------------------------------
 * Waiters (sched/sched.h)
 */

void weft__waiter_prepare(struct weft__waiter *wt)
{
    struct weft__worker *w = weft__tls_worker;
    wt->task = w ? w->current : NULL;
    wt->futex = 0;
    wt->stealable = false;
    /* Relaxed: the caller publishes the waiter with a release operation
     * (or under a lock) after this, which orders this store before any
     * waker can see the waiter. */
    if (wt->task)
        weft__store_rlx_u32(&wt->task->park_state, WEFT__PARKING);
}

void weft__waiter_wait(struct weft__waiter *wt)
{
    if (wt->task) {
        park_task(wt->task);
        return;
    }
    /* Acquire: pairs with the release store in weft__waiter_wake. */
    while (weft__load_acq_u32(&wt->futex) == 0)
        weft__futex_wait(&wt->futex, 0);
}

bool weft__waiter_wait_until(struct weft__waiter *wt, int64_t deadline_ns)
{
    WEFT_ASSERT(!wt->task);
    /* Acquire: pairs with the release store in weft__waiter_wake. */
    while (weft__load_acq_u32(&wt->futex) == 0) {
        if (weft__now_ns() >= deadline_ns)
            return false;
        weft__futex_wait_until(&wt->futex, 0, deadline_ns);
    }
    return true;
}

void weft__waiter_abandon(struct weft__waiter *wt)
{
    /* Never published, so no waker can race this store. */
    if (wt->task)
        weft__store_rlx_u32(&wt->task->park_state, WEFT__RUN);
}

/* Make woken t ready on the waker's deque, or through the injection queue
 * from any other thread (a stealable waiter: sched.h). */
static void submit_woken(weft_task *t)
{
    struct weft__worker *w = weft__tls_worker;
    bool local = w && w->rt == t->rt;
    set_ready(t, local ? (int)w->index : -1);
    weft__task_submit(t);
}

void weft__waiter_wake(struct weft__waiter *wt)
{
    weft_task *t = wt->task; /* read before the waiter's stack may change */
    if (t) {
        /* Seq exchange: pairs with the CAS in finish_park. Exactly one of
         * the two sees the other and enqueues t. */
        if (weft__xchg_seq_u32(&t->park_state, WEFT__RUN) == WEFT__PARKED) {
            if (WEFT_UNLIKELY(wt->stealable))
                submit_woken(t);
            else
                weft__task_enqueue(t);
        }
        return;
    }
    /* Release: what the waker did before is visible to the woken thread.
     * The thread may return (and its stack frame vanish) as soon as it
     * sees the store; a futex wake on a stale address is harmless. */
    weft__store_rel_u32(&wt->futex, 1);
    weft__futex_wake(&wt->futex, 1);
}

/* --------------------------------------------------------------------------
 * Worker lifecycle (runtime.c calls these)
 */

int weft__worker_new(weft_runtime *rt, unsigned index)
{
    struct weft__worker *w = weft__malloc_aligned(WEFT__CACHELINE, sizeof(*w));
    if (!w)
        return -ENOMEM;
    memset(w, 0, sizeof(*w));
    w->rt = rt;
    w->index = index;
    w->rng = 0x9e3779b97f4a7c15ull * (index + 1);
    w->fair_countdown = WEFT__FAIR_TICKS;
    weft__stats_worker_init(w);
    int err = weft__deque_init(&w->deque, WEFT__DEQUE_CAP);
    if (err < 0) {
        weft__free(w);
        return err;
    }
    rt->workers[index] = w;
    return 0;
}

/* Called once every worker of rt exists: a worker may steal from any other
 * as soon as it runs. */
int weft__worker_launch(struct weft__worker *w)
{
    int err = pthread_create(&w->thread, NULL, worker_main, w);
    if (err)
        return -err;
    char name[16];
    snprintf(name, sizeof(name), "weft-w%u", w->index);
    pthread_setname_np(w->thread, name);
    return 0;
}

void weft__worker_stop_all(weft_runtime *rt, unsigned started)
{
    /* Release: workers that see stop see everything before it. */
    weft__store_rel_u32(&rt->stop, 1);
    pthread_mutex_lock(&rt->idle_lock);
    for (unsigned i = 0; i < started; i++)
        weft__store_rel_u32(&rt->workers[i]->park_futex,
                            rt->workers[i]->park_futex + 1);
    pthread_mutex_unlock(&rt->idle_lock);
    for (unsigned i = 0; i < started; i++) {
        weft__futex_wake(&rt->workers[i]->park_futex, 1);
        pthread_join(rt->workers[i]->thread, NULL);
    }
}

void weft__worker_free(struct weft__worker *w)
{
    if (!w)
        return;
    weft__deque_destroy(&w->deque);
    weft__free(w);
}
