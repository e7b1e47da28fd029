/* Private structures of the scheduler, shared by the files of sched/ only.
 * Other layers use sched/sched.h.
 */
#ifndef WEFT_SCHED_INTERNAL_H
#define WEFT_SCHED_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sched/atomic.h"
#include "sched/deque.h"
#include "sched/sched.h"

#define WEFT__CACHELINE 64

/* --------------------------------------------------------------------------
 * Stacks (stack.c)
 *
 * A stack's descriptor lives at the top of its own usable memory, so stacks
 * cost no heap allocation. Below the usable memory sits a guard page.
 */
struct weft__stack {
    struct weft__stack *next; /* free-list link; owned by the list holder */
    char *lo;                 /* lowest usable byte, just above the guard */
    size_t size;              /* usable bytes, descriptor included */
    bool pooled;              /* default size, carved from a region */
    void *tsan_fiber;         /* TSan's fiber for this stack (TSan only) */
};

/* Highest address a context on st may use. */
static inline void *weft__stack_top(const struct weft__stack *st)
{
    return (void *)st;
}

/* Per-worker cache of idle default-sized stacks. Owner worker only. */
struct weft__stack_cache {
    struct weft__stack *head;
    size_t bytes;
};

/* Shared pool of a runtime's default-sized stacks. */
struct weft__stack_pool {
    pthread_mutex_t lock;
    /* Under lock: */
    struct weft__stack *free;     /* released: memory given back */
    struct weft__region *regions; /* every mapping, unmapped at free */
    char *carve, *carve_end;      /* unused rest of the newest region */
    unsigned mprotect_guards;     /* guards installed with the fallback */
    bool madv_guard_failed;       /* kernel lacks MADV_GUARD_INSTALL */
    /* Immutable after init: */
    size_t task_size;   /* the configured stack size tasks are promised */
    size_t size;        /* usable bytes of a pooled stack: 2 * task_size */
    size_t cache_limit; /* bytes each worker may cache */
    size_t page;
};

int weft__stack_pool_init(struct weft__stack_pool *p, size_t size,
                          size_t cache_limit);
/* Tests: make new pools guard stacks with mprotect, as on kernels older
 * than 6.13. */
extern bool weft__stack_test_mprotect_guards;
void weft__stack_pool_destroy(struct weft__stack_pool *p);
/* A stack of `size` usable bytes for a task: its weft__task_stack_size.
 * The runtime's default (p->task_size) comes from c or the pool, any other
 * size is mapped on its own. Returns NULL and sets errno when no stack can
 * be had. */
struct weft__stack *weft__stack_acquire(struct weft__stack_pool *p,
                                        struct weft__stack_cache *c,
                                        size_t size);
void weft__stack_release(struct weft__stack_pool *p,
                         struct weft__stack_cache *c, struct weft__stack *st);
void weft__stack_cache_drain(struct weft__stack_pool *p,
                             struct weft__stack_cache *c);
/* Install the overflow handler (once per process) and this thread's
 * alternate signal stack. Returns the altstack to free with
 * weft__stack_altstack_free, or NULL and errno. */
void *weft__stack_altstack_new(void);
void weft__stack_altstack_free(void *alt);

/* --------------------------------------------------------------------------
 * Tasks (task.c)
 */

/* park_state: the hand-shake between a parking task and its waker. */
enum {
    WEFT__RUN = 0, /* running or queued to run */
    WEFT__PARKING, /* about to switch away; a wake now means "run again" */
    WEFT__PARKED,  /* switched away; the waker must enqueue it */
};

/* Sentinels of weft_task.joiner (real waiters are aligned pointers). */
#define WEFT__JOIN_DONE     ((void *)1)
#define WEFT__JOIN_DETACHED ((void *)2)
/* A gather or a group owns the handle and will join it; nobody else may. */
#define WEFT__JOIN_CLAIMED   ((void *)3)
#define WEFT__JOIN_SENTINELS 3u /* values up to this are not listeners */

/* weft_task.cancel, one atomic word (cancel.c):
 *   bits 0-13   pending cancellation requests (saturating)
 *   bit 14      DELIVERED: a suspension point reported the cancellation
 *   bit 15      ENDED: the task ended cancelled
 *   bits 16-23  EPOCH: interrupts so far (requests and scope expiries),
 *               mod 256
 *   bits 24-31  SEEN: the EPOCH of the inline parent (the task on whose
 *               stack this one runs) up to which its interrupts have been
 *               forwarded to this task */
#define WEFT__CANCEL_COUNT       0x00003fffu
#define WEFT__CANCEL_DELIVERED   (1u << 14)
#define WEFT__CANCEL_ENDED       (1u << 15)
#define WEFT__CANCEL_EPOCH_SHIFT 16
#define WEFT__CANCEL_SEEN_SHIFT  24

/* A task is 112 bytes (a mimalloc size class): first what changes while it
 * runs (written by the worker running it, its joiner and its cancellers),
 * then what is fixed at spawn, so a thief running a task dirties little
 * that its spawner reads. Padding it to two whole cache lines removed the
 * rest of that false sharing (1M spawn+join on 2 warm workers: 78 -> 61
 * ns/task) but costs memory, which a fresh process pays in page faults: a
 * smaller task ran 15% faster from a cold start. */
struct weft_task {
    union {
        /* Saved stack pointer while switched out. Written by the context
         * switch on the worker that runs the task; published to the next
         * worker by the queue or park hand-off that moves the task. */
        void *sp;
        /* Before the first run (sp unused, stack NULL): when it was
         * spawned, if its first wait in a run queue is a delay sample
         * (weft__delay_stamp). Written by the spawner, read by the worker
         * that starts it, ordered by the queue hand-off. */
        int64_t spawn_ns;
    };
    /* NULL until first run; then owned by the task until it ends. */
    struct weft__stack *stack;
    union {
        /* The argument, then the return value once the task has finished.
         * Written by the running worker; read by the joiner after it
         * observes joiner == WEFT__JOIN_DONE (acquire). */
        void *arg;
        /* Between its first run (which passed arg to fn) and its end: when
         * it was last made ready, if this wait in a run queue is a delay
         * sample. Written by whoever made it ready, read by the worker
         * that resumes it, ordered by the queue or park hand-off. */
        int64_t ready_ns;
    };
    /* Any thread, atomic: NULL, a struct weft__done * (a joiner or waiter
     * listens), WEFT__JOIN_CLAIMED, WEFT__JOIN_DETACHED or WEFT__JOIN_DONE.
     * The single point where completion meets join or detach: task.c. */
    void *joiner;
    /* Intrusive link of a struct weft__task_list (the injection queue, a
     * worker's yield list, a timer thread's batch); owned by whichever list
     * holds the task. */
    weft_task *next;
    uint32_t park_state; /* any thread, atomic: WEFT__RUN/PARKING/PARKED */
    /* Where the task is, for snapshots only: weft__where_encode below.
     * Written relaxed by whoever moves the task; a snapshot may lag. */
    uint32_t where;
    /* Any thread, atomic: pending cancellation requests and the
     * WEFT__CANCEL_* bits (cancel.c). */
    uint32_t cancel;
    /* Protects `wait` against the interrupters (cancel.c). */
    weft__spinlock lock;
    /* Under lock: what a cancel or an expired scope must interrupt: the
     * struct weft__wait the task is parked in, or (low bit set) the task
     * running inline on this task's stack. NULL: nothing to interrupt. */
    void *wait;

    /* Fixed at spawn (but name, which changes under the shard's lock, and
     * fn, which becomes `parent` when the task starts). */
    union {
        weft_fn fn; /* until the task starts */
        /* Once started: the task on whose stack it runs inline, or NULL.
         * Read and written by the task itself only. */
        weft_task *parent;
    };
    weft_runtime *rt;
    char *name; /* under the shard's lock; NULL: unnamed */
    uint64_t id;
    /* The innermost open timeout scope; the task itself only. */
    struct weft__scope *scope;
    uint16_t stack_units; /* asked-for stack in 4 KiB; 0: runtime default */
    uint16_t shard;       /* index of its registry shard */
    uint32_t slot;        /* its slot in that shard, under the shard's lock */
};

/* weft_task.where: (last worker << 8) | enum weft_task_state, the worker
 * WEFT__WHERE_NOBODY when the task has not been on one. The state's byte
 * also carries two flags of the delay sampling (stats.c):
 *   STAMP    the task's next wait in a run queue is to be timed: set with
 *            RUNNING when its run was picked, kept with WAITING, and acted
 *            upon (then cleared) by whoever makes it ready;
 *   SAMPLED  the task is ready (or new) and that wait is timed: it carries
 *            its stamp in spawn_ns or ready_ns. The worker that runs it
 *            records the wait; set_where(RUNNING) clears the flag. */
#define WEFT__WHERE_NOBODY  0xffffffu
#define WEFT__WHERE_SAMPLED 0x80u
#define WEFT__WHERE_STAMP   0x40u

/* worker: a worker's index, or -1 for none, which the shift turns into
 * WEFT__WHERE_NOBODY without a branch. */
static inline uint32_t weft__where_encode(int worker,
                                          enum weft_task_state state)
{
    return ((uint32_t)worker << 8) | (uint32_t)state;
}

static inline enum weft_task_state weft__where_state(uint32_t where)
{
    return (enum weft_task_state)(where & 0x3f);
}

/* The worker's index, or -1 for none. */
static inline int weft__where_worker(uint32_t where)
{
    return (where >> 8) == WEFT__WHERE_NOBODY ? -1 : (int)(where >> 8);
}

/* An intrusive FIFO of tasks linked by ->next: a worker's yield list, the
 * injection queue, a timer thread's batch. Its holder's protection (owner
 * only, a lock) covers the tasks' links too. */
struct weft__task_list {
    weft_task *head, *tail; /* NULL, NULL when empty */
};

/* Append the chain first..last, already linked by ->next. */
static inline void weft__task_list_append(struct weft__task_list *l,
                                          weft_task *first, weft_task *last)
{
    last->next = NULL;
    if (l->tail)
        l->tail->next = first;
    else
        l->head = first;
    l->tail = last;
}

/* Remove and return the first task, or NULL when empty. */
static inline weft_task *weft__task_list_pop(struct weft__task_list *l)
{
    weft_task *t = l->head;
    if (t && !(l->head = t->next))
        l->tail = NULL;
    return t;
}

/* What t->joiner points to while someone waits for t: called once, by the
 * party that finishes t, on whatever thread that is. */
struct weft__done {
    void (*fn)(struct weft__done *d);
};

/* Wait until t has finished, as its one joiner (task.c), parking unless it
 * is done already. t->joiner must hold `claim` (NULL, or
 * WEFT__JOIN_CLAIMED for the gather or group that claimed t). The caller's
 * interrupts go to hook(wait, code) under its lock while it waits
 * (weft_join's hook cancels t). Returns 0 once t is done, or -EINVAL when
 * another party already waits for t, or it is detached. */
int weft__join_done(weft_task *t, void *claim,
                    void (*hook)(struct weft__wait *, int), void *arg);
/* weft__join_done, then weft__join_reap: weft_join's wait (when it could
 * not run t inline) and a gather's join of each member. */
int weft__join_task(weft_task *t, void *claim,
                    void (*hook)(struct weft__wait *, int), void *arg,
                    void **result);
/* A task made but not yet runnable (weft_spawn_ex in two steps), so that
 * its joiner or cancellation can be set first. */
weft_task *weft__task_new(weft_runtime *rt, weft_fn fn, void *arg,
                          const weft_task_opts *opts);
void weft__task_start(weft_task *t);
/* Free finished t's handle and return what weft_join returns for it. */
int weft__join_reap(weft_task *t, void **result);

/* A shard of the all-tasks registry: every task from spawn until its
 * handle is freed (weft__task_free). A spawn on a worker inserts into that
 * worker's shard (the last shard takes spawns from other threads), and the
 * joiner that frees it is nearly always the same task on the same worker,
 * so the lock and the slots stay in one cache.
 *
 * The registry outlives its runtime while handles remain: weft_runtime_free
 * waits for every task to finish, then marks the shards that still hold
 * handles as orphaned, and the weft__task_free that empties the last of
 * them frees the registry and the runtime struct. So a handle may be
 * joined or detached after weft_runtime_free, from any thread.
 * Slots, not a linked list: unlinking from a list writes the neighbours,
 * which other workers may be running. A slot holds a task pointer, or, when
 * free, (index of the next free slot << 1) | 1. A spinlock, because it is
 * held for a few writes (and a rare doubling of the array). */
struct weft__shard {
    weft__spinlock lock;
    uintptr_t *slots;   /* under lock */
    uint32_t cap;       /* under lock: slots allocated */
    uint32_t used;      /* under lock: slots ever handed out */
    uint32_t free_head; /* under lock: first free slot, or UINT32_MAX */
    uint32_t live;      /* under lock: handles registered here */
    bool orphaned;      /* under lock: the runtime is freed (see above) */
    /* Under lock: when each slot's task was spawned (coarse monotonic ns,
     * for the dump's ages), or NULL if the runtime keeps no ages. */
    int64_t *born;
} __attribute__((aligned(WEFT__CACHELINE)));

/* --------------------------------------------------------------------------
 * The injection queue (inject.c): tasks made ready off-worker, spawned from
 * plain threads, and tasks whose worker's deque could not grow.
 */
struct weft__inject {
    pthread_mutex_t lock;
    struct weft__task_list list; /* under lock */
    /* Written under lock; read without it to skip empty polls. */
    uint64_t len;
} __attribute__((aligned(WEFT__CACHELINE)));

void weft__inject_init(struct weft__inject *q);
void weft__inject_destroy(struct weft__inject *q);
/* Push the chain first..last (linked by ->next) of n tasks. */
void weft__inject_push(struct weft__inject *q, weft_task *first,
                       weft_task *last, uint64_t n);
/* The same, with q->lock already held by the caller. */
void weft__inject_push_locked(struct weft__inject *q, weft_task *first,
                              weft_task *last, uint64_t n);
/* Pop up to max (>= 1) tasks, returned as a chain; *n gets the count.
 * Takes the lock even for an empty queue: callers skip that case with
 * weft__inject_is_empty first. */
weft_task *weft__inject_pop(struct weft__inject *q, uint64_t max, uint64_t *n);
static inline bool weft__inject_is_empty(struct weft__inject *q);

/* --------------------------------------------------------------------------
 * Timers (timer.c): a binary min-heap of deadlines and the thread that
 * fires them. The reactor of DESIGN.md section 4 will take this thread's
 * place, its epoll_wait bounded by the earliest deadline.
 */
struct weft__timers {
    pthread_mutex_t lock;
    struct weft__timer **heap; /* under lock */
    uint32_t len, cap;         /* under lock */
    int64_t sleep_until;       /* under lock: the thread's wake-up, or NEVER */
    bool stop;                 /* under lock */
    pthread_t thread;
};

int weft__timers_start(weft_runtime *rt);
/* Stop the thread; every timer must be gone (every task has ended). */
void weft__timers_stop(weft_runtime *rt);

/* --------------------------------------------------------------------------
 * Cancellation and timeout scopes (cancel.c, timeout.c)
 */

/* An open timeout scope, on the heap (timeout.c). */
struct weft__scope {
    struct weft__timer timer;
    struct weft__scope *parent; /* the task only */
    weft_task *task;
    uint32_t expired; /* atomic: set by the timer thread or the task */
};

/* Whether one of t's own open scopes has expired. The task t only. */
bool weft__scopes_expired(const weft_task *t);

/* The interrupt of t's own: -ECANCELED (requests pending), -ETIMEDOUT
 * (one of its scopes expired) or 0. The task t only; its inline parents'
 * interrupts are cancel.c's business. */
static inline int weft__own_interrupt(const weft_task *t)
{
    /* Relaxed: the count is read again under t->lock before t parks
     * (weft__wait_arm); a request racing this look is seen there. */
    if (weft__load_rlx_u32((uint32_t *)&t->cancel) & WEFT__CANCEL_COUNT)
        return -ECANCELED;
    if (__builtin_expect(t->scope != NULL, 0) && weft__scopes_expired(t))
        return -ETIMEDOUT;
    return 0;
}

/* weft__check_interrupt for the calling task t, with the common case (no
 * request, no scope, not inline) inline. */
int weft__task_interrupt_slow(weft_task *t);
static inline int weft__task_interrupt_of(weft_task *t)
{
    /* Relaxed: a request racing this check is seen by the next one. */
    if (__builtin_expect(
            !weft__load_rlx_u32(&t->cancel) && !t->scope && !t->parent, 1))
        return 0;
    return weft__task_interrupt_slow(t);
}

/* t starts to run inline on parent's stack (worker.c): only interrupts of
 * parent from now on are forwarded to it. Both tasks are the caller's. */
void weft__inline_adopt_slow(weft_task *t, const weft_task *parent);
static inline void weft__inline_adopt(weft_task *t, const weft_task *parent)
{
    /* Relaxed: an interrupt of parent racing the start is forwarded or
     * not, as it would race a join that has not parked yet. */
    if (__builtin_expect(weft__load_rlx_u32((uint32_t *)&parent->cancel) >>
                             WEFT__CANCEL_EPOCH_SHIFT,
                         0))
        weft__inline_adopt_slow(t, parent);
}

/* Count an interrupt of t (a request for -ECANCELED, a scope expiry for
 * -ETIMEDOUT) and interrupt its current wait: its hook, or completing it.
 * Any thread, with nothing of t's held. */
void weft__task_interrupt(weft_task *t, int code);
/* t (the calling task) has returned from its body: close scopes it left
 * open, and record whether it ended cancelled. */
void weft__task_returned_slow(weft_task *t);
static inline void weft__task_returned(weft_task *t)
{
    /* Relaxed: t's own scopes, and a request that races the return may
     * count or not. */
    if (__builtin_expect(t->scope || weft__load_rlx_u32(&t->cancel), 0))
        weft__task_returned_slow(t);
}
/* Whether t, which has not started, must never run; if so it is marked as
 * ended cancelled. */
bool weft__task_cancelled_before_start_slow(weft_task *t);
static inline bool weft__task_cancelled_before_start(weft_task *t)
{
    return __builtin_expect(weft__load_rlx_u32(&t->cancel) != 0, 0) &&
           weft__task_cancelled_before_start_slow(t);
}
/* Close every scope t left open (their timers are removed). */
void weft__scopes_close_all(weft_task *t);
/* Cancel every task of rt that has not finished and has no request yet. */
void weft__runtime_cancel_all(weft_runtime *rt);

/* --------------------------------------------------------------------------
 * Statistics (stats.c)
 *
 * Scheduling delay: the time a task spends ready before it runs, from a
 * spawn, a wake-up or a yield to the run that follows. Reading the clock
 * at each of those would cost two clock reads per switch (a weft_yield
 * between two tasks takes ~18 ns; one read ~25 ns, rdtsc ~10 ns here), so
 * about one wait in rt->delay_every is timed. A worker picks runs by its
 * run count, which it keeps anyway: the next pick comes a jittered
 * delay_every/2 .. 3*delay_every/2 runs after the last (next_sample), so
 * the picks follow no period of the workload. A picked run marks its
 * task (STAMP in `where`); whoever makes that task ready next reads the
 * clock into it and flags it SAMPLED; the worker that runs it reads the
 * clock again and adds the wait to its histogram. A spawn is picked when
 * the Fibonacci hash of the spawn count (n * 2^64/phi mod 2^64, spread
 * evenly with no short period) is at most sample_limit = 2^64 /
 * delay_every. Per switch this costs two flag tests and a compare; a
 * countdown decremented at every ready event cost more (its memory
 * read-modify-write), and the clock reads are ~50 ns per sample.
 */
#define WEFT__DELAY_EVERY 256 /* the default sampling interval */

struct weft__worker;

struct weft__delay_hist {
    uint64_t buckets[WEFT_DELAY_BUCKETS]; /* see weft_delay_hist */
    uint64_t max_ns;
};

/* Whether the n-th spawn is picked, for a limit. */
static inline bool weft__delay_pick(uint64_t n, uint64_t limit)
{
    return n * 0x9e3779b97f4a7c15ull <= limit;
}

/* t, whose `where` has STAMP, is being made ready: stamp it. Returns
 * WEFT__WHERE_SAMPLED, for the caller to store with READY. */
uint32_t weft__delay_stamp(weft_task *t);
/* w starts its n-th run, of t (whose `where` was `where`), and n reached
 * w->next_observe or t is SAMPLED: record t's wait if SAMPLED (before t's
 * stack is set if t has not started), end the run that ends when watching
 * (weft__watch_switch), and return STAMP if this run is picked, for the
 * caller to store with RUNNING. n == 0: an inline run of SAMPLED t, whose
 * wait is recorded (and its flow noted) and nothing else: the caller's
 * set_current does the rest. */
uint32_t weft__run_observed(struct weft__worker *w, weft_task *t,
                            uint32_t where, uint64_t n);
/* Set up w's sampling and watching from its runtime (w->rt and w->index
 * set). */
void weft__stats_worker_init(struct weft__worker *w);
/* w watches its runs (w->watch: slow task reports or a trace) and its
 * running task changes from w->current to next (either may be NULL):
 * end the run that ends (report it if slow, trace its slice) and start
 * timing the next. */
void weft__watch_switch(struct weft__worker *w, weft_task *next);
/* The running task of w calls weft_yield with nothing else ready here: it
 * runs on, but as after a suspension point (slow task reports only). */
void weft__slow_restart(struct weft__worker *w);

/* --------------------------------------------------------------------------
 * Chrome trace-event export (trace.c), WEFT_TRACE=<file.json>
 */
struct weft__trace;
struct weft__trace_buf;
/* The runtime whose reactor thread the calling thread is, or NULL (set by
 * that thread itself, timer.c): its trace events go to the reactor's
 * track. */
extern __thread weft_runtime *weft__tls_reactor_of;
/* Set rt->trace up if WEFT_TRACE is set (before the workers exist).
 * 0 or -ENOMEM. */
int weft__trace_new(weft_runtime *rt);
/* Worker i's event buffer, or NULL when rt is not traced. */
struct weft__trace_buf *weft__trace_buf_of(weft_runtime *rt, unsigned i);
/* Write rt's trace file and free the trace, once every thread that writes
 * events has stopped. */
void weft__trace_finish(weft_runtime *rt);
/* Events. The worker's own: a run of t from start_ns to end_ns that ended
 * flow `flow` (0: none). Any thread: t made ready at now_ns, starting the
 * flow weft__trace_flow_id(t->id, now_ns). The thief's: n tasks stolen
 * from victim. The reactor thread's: it fired n timers from start_ns. */
void weft__trace_run(struct weft__worker *w, const weft_task *t,
                     int64_t start_ns, int64_t end_ns, uint64_t flow);
void weft__trace_ready(weft_task *t, int64_t now_ns);
void weft__trace_steal(struct weft__worker *thief, unsigned victim, uint64_t n);
void weft__trace_timers(weft_runtime *rt, int64_t start_ns, uint64_t n);
/* The id of the flow from t's ready event stamped at stamp_ns to its run
 * (bit 0: a spawn, t had not started). Both ends compute it. */
static inline uint64_t weft__trace_flow_id(uint64_t id, int64_t stamp_ns,
                                           bool spawn)
{
    uint64_t x = (id * 0x9e3779b97f4a7c15ull) ^ (uint64_t)stamp_ns;
    return (x << 1) | spawn;
}

/* Read the environment (WEFT_DELAY_SAMPLE, WEFT_SLOW_TASK_MS) into rt. */
void weft__stats_configure(weft_runtime *rt);

/* The schedtrace thread (monitor.c): started by weft_runtime_new when
 * WEFT_SCHEDTRACE is set, stopped before the workers. 0 or -errno. */
int weft__monitor_start(weft_runtime *rt);
void weft__monitor_stop(weft_runtime *rt);

/* SIGUSR1 dumps (dump.c): list rt if WEFT_DUMP_ON_SIGNAL is set (starting
 * the process's dumper thread the first time); unlist it before it is
 * freed. 0 or -errno. */
int weft__dump_register(weft_runtime *rt);
void weft__dump_unregister(weft_runtime *rt);

/* A coarse monotonic clock (a tick's resolution, a few ns to read; task.c):
 * enough for ages in a dump, and cheap enough for the spawn path when ages
 * are kept. Never ahead of weft__now_ns; compare it only with itself. */
int64_t weft__coarse_now_ns(void);

/* Copy t's name (or "") into out, under its shard's lock (task.c). */
void weft__task_name(const weft_task *t, char out[32]);

/* --------------------------------------------------------------------------
 * Workers (worker.c)
 */

/* What a task that switches out leaves for the context that runs next on
 * its worker (worker.c, after_switch), to be done once its context is
 * saved. */
enum weft__op {
    WEFT__OP_PARK,  /* finish parking it: finish_park() */
    WEFT__OP_YIELD, /* it yielded: push it onto the deque, to be stolen */
    WEFT__OP_EXIT,  /* it has returned: release and reap it */
};

struct weft__worker {
    /* Owner worker only. */
    weft_runtime *rt;
    unsigned index;
    weft_task *current;            /* the task running now, or NULL */
    weft_task *lifo;               /* the task woken last; not stealable */
    unsigned lifo_streak;          /* LIFO runs in a row (capped) */
    uint32_t fair_countdown;       /* rounds until the next fairness round */
    struct weft__task_list yields; /* tasks that yielded, in order */
    /* While the worker polls the reactor: the tasks it wakes are collected
     * here (weft__task_enqueue) and go to the injection queue in one
     * batch, behind what is ready already, instead of the LIFO slot and
     * the deque's bottom, where fd events arriving without end would keep
     * the deque's oldest tasks waiting. */
    struct weft__batch *collect;
    void *sched_sp; /* the scheduler's saved context */
    /* The task that switched out last, with what is left to do for it:
     * set by that task just before its switch, done and cleared (out =
     * NULL) by whatever context runs next here: the scheduler, or the task
     * switched to (after_switch). NULL: nothing left to do. */
    weft_task *out;
    enum weft__op op;
    bool spinning;            /* counted in rt->nr_spinning */
    uint64_t rng;             /* victim selection */
    uint64_t next_id, id_end; /* block of task ids */
    struct weft__stack_cache stacks;
    void *altstack;
    /* Sanitizers: the scheduler context's stack and fibers. */
    const void *sched_stack_lo;
    size_t sched_stack_size;
    void *tsan_sched_fiber;
    pthread_t thread;
    /* Observability (stats.c, trace.c), after the fields above so as not
     * to move them. The run (counters.runs) that is picked next for a
     * delay sample, UINT64_MAX for none; and the run from which on runs
     * take weft__run_observed: next_sample, or 0 when watching. */
    uint64_t next_sample, next_observe;
    /* Watching runs: slow_ns || trace, fixed before the worker starts. */
    bool watch;
    int64_t slow_ns;    /* rt->slow_ns: 0, or report longer runs */
    int64_t slow_start; /* slow_ns: when current began to run unsuspended */
    struct weft__trace_buf *trace; /* this worker's events, or NULL */
    int64_t run_start;             /* trace: when current's run began */
    uint64_t run_flow;  /* trace: the flow current's run ends (0: none) */
    uint64_t next_flow; /* trace: the flow the next run ends, once known */

    /* Shared. */
    struct weft__deque deque;
    /* Atomic; bumped (with a release store) only under rt->idle_lock, to
     * wake this worker from its futex wait, and read by the worker (acquire)
     * while it sleeps. Bumping under the lock gives every sleep its own
     * sequence number (worker.c). */
    uint32_t park_futex __attribute__((aligned(WEFT__CACHELINE)));
    /* Counters: written by the owner only (weft__count), read by any. */
    weft_counters counters __attribute__((aligned(WEFT__CACHELINE)));
    /* The delay samples of the tasks this worker ran: written by the
     * owner only (weft__count), read by any (stats.c). */
    struct weft__delay_hist delay;
};

struct weft_runtime {
    /* Immutable after weft_runtime_new. */
    unsigned nworkers;
    struct weft__worker **workers;

    struct weft__inject inject;
    struct weft__stack_pool stacks;
    /* The registry: nworkers + 1 shards, the last for spawns from other
     * threads. Outlives the rest of rt while handles remain (above). */
    struct weft__shard *shards;
    uint32_t orphan_refs; /* atomic: see weft__registry_orphan */

    /* Idle protocol (worker.c). nr_spinning: workers that will look at
     * every queue again before they sleep. Atomic, any thread. Each on its
     * own line: nr_spinning changes on every steal, while nr_parked, which
     * every spawn reads, changes only when a worker sleeps or wakes. */
    uint32_t nr_spinning __attribute__((aligned(WEFT__CACHELINE)));
    /* The number of entries in idle. Atomic: written under idle_lock
     * only; read under it or (by weft__notify) without it. */
    uint32_t nr_parked __attribute__((aligned(WEFT__CACHELINE)));
    pthread_mutex_t idle_lock;
    unsigned *idle; /* parked worker indices, under idle_lock */

    /* Tasks spawned into rt from outside its workers (plain threads, other
     * runtimes). Any thread, atomic. */
    uint64_t ext_spawned;
    /* What threads other than the workers did for rt (weft_stats'
     * `outside`): timers_fired by the timer thread (its only writer,
     * under the heap lock: weft__count), io_events and pool_jobs counted
     * off-worker (any thread, atomic add). Read relaxed. */
    weft_counters outside;

    /* Observability (stats.c, monitor.c, dump.c), immutable after
     * weft_runtime_new but where said. */
    int64_t start_ns;      /* when rt was made */
    uint32_t delay_every;  /* one ready-to-run wait in this many is timed;
                              0: none (WEFT_DELAY_SAMPLE) */
    uint64_t sample_limit; /* spawns' weft__delay_pick: 2^64 / delay_every */
    int64_t slow_ns;       /* report runs longer than this; 0: off
                              (WEFT_SLOW_TASK_MS) */
    struct weft__monitor *monitor; /* the schedtrace thread, or NULL */
    struct weft__trace *trace;     /* WEFT_TRACE's buffers, or NULL */
    bool dump_on_signal;           /* listed for SIGUSR1 dumps */
    bool track_age;                /* record spawn times (shard->born) */
    weft_runtime *dump_next;       /* that list's link, under its lock */

    struct weft__timers timers;
    bool timers_started; /* immutable after weft_runtime_new */
    /* The I/O reactor (io/reactor.c), whose thread is the timer thread.
     * Immutable after weft_runtime_new. */
    struct weft__reactor *reactor;

    /* Shutdown (runtime.c). */
    uint32_t stop;       /* atomic: workers exit when set */
    uint32_t freeing;    /* atomic: weft_runtime_free is waiting */
    uint32_t exit_futex; /* atomic: bumped by a worker parking while freeing */
};

/* The worker the calling thread is, or NULL on any other thread. Read with
 * the initial-exec TLS model (a %fs-relative load), so a task that migrates
 * between workers reads its new worker after every switch: the compiler
 * never caches a TLS address across the context-switch call. */
extern __thread struct weft__worker *weft__tls_worker;

/* weft__tls_worker read again after a context switch. The load itself is
 * always right, but TSan's instrumentation computes the variable's address
 * from the thread pointer and may keep that address across the switch
 * call, so it would record the read against the old worker's TLS (and
 * report a race with that thread's exit). Under TSan the read goes
 * through a call the compiler cannot see into. */
#ifdef WEFT_TSAN
struct weft__worker *weft__tls_worker_reload(void);
#else
static inline struct weft__worker *weft__tls_worker_reload(void)
{
    return weft__tls_worker;
}
#endif

int weft__worker_new(weft_runtime *rt, unsigned index);
int weft__worker_launch(struct weft__worker *w);
/* Stop and join the first `launched` workers. */
void weft__worker_stop_all(weft_runtime *rt, unsigned launched);
void weft__worker_free(struct weft__worker *w);
/* Make a task runnable: on the calling worker if it belongs to the same
 * runtime, else through the injection queue. */
void weft__task_enqueue(weft_task *t);
/* Wake-ups collected by a thread outside the workers (the timer thread
 * sets weft__tls_batch while it fires timers): weft__task_enqueue appends
 * tasks of rt to it, and weft__batch_flush pushes them to the injection
 * queue at once. The tasks cannot run before the flush, so they stay
 * alive. */
struct weft__batch {
    weft_runtime *rt;             /* immutable: only its tasks are collected */
    struct weft__task_list tasks; /* the owning thread only */
    uint64_t n;                   /* the owning thread only */
};
extern __thread struct weft__batch *weft__tls_batch;
void weft__batch_flush(struct weft__batch *b);

/* Make a new task runnable. */
void weft__task_submit(weft_task *t);
/* Called by a task in weft_join(target): if target has not started, sits
 * near the bottom of this worker's deque and nobody waits for it (its
 * joiner field is NULL), run it here, on the calling task's stack
 * (worker.c). Returns 0 if it did not; 1 if it ran it and is its joiner;
 * -1 if it ran it but another party began to wait for it meanwhile
 * (weft__task_finish_inline). */
int weft__join_run_inline(weft_task *target);
/* Wake one parked worker if no worker is looking for work. */
void weft__notify(weft_runtime *rt);

/* The registry (task.c). */
int weft__registry_init(weft_runtime *rt);
/* Called by weft_runtime_free once every task has finished: returns true
 * if no handle remains and the caller frees the registry and rt now (with
 * weft__registry_free); otherwise the last weft__task_free will. */
bool weft__registry_orphan(weft_runtime *rt);
void weft__registry_free(weft_runtime *rt);

/* The stack size a task was promised, in bytes. */
static inline size_t weft__task_stack_size(const weft_task *t)
{
    return t->stack_units ? (size_t)t->stack_units << 12
                          : t->rt->stacks.task_size;
}

/* Task lifecycle (task.c). t has ended on worker w: it returned (and
 * switched out for the last time: called by w's scheduler context), or it
 * was cancelled before it started (called by whichever context of w was
 * about to run it). Releases its stack and hands it to its joiner. */
void weft__task_finish(struct weft__worker *w, weft_task *t);
/* The same for a task its joiner ran inline, on the joiner's stack; its
 * joiner field is expected to be NULL still. Returns true if it was: the
 * joiner owns the finished t. Otherwise another party began to wait for t
 * (or detached it) while it ran; that party now owns it, and the joiner
 * must not touch it. */
bool weft__task_finish_inline(struct weft__worker *w, weft_task *t);
void weft__task_free(weft_task *t);
uint64_t weft__runtime_alive(weft_runtime *rt);

/* Futex wrappers (worker.c). The timed wait takes an absolute
 * CLOCK_MONOTONIC deadline (WEFT__NEVER: none). */
void weft__futex_wait_until(uint32_t *addr, uint32_t val, int64_t deadline_ns);

static inline bool weft__inject_is_empty(struct weft__inject *q)
{
    return weft__load_rlx_u64(&q->len) == 0;
}

#endif /* WEFT_SCHED_INTERNAL_H */
