/* The scheduler's interface to the other layers (io/, sync/) and to its own
 * files. Nothing outside sched/ reaches a deque, a stack or a context: it
 * parks and wakes tasks through a weft__waiter, and reads the clock.
 *
 * A waiter is either a task (it parks, and its worker runs something else)
 * or a plain thread (it blocks on a futex in the waiter). The waiter lives
 * in the waiting party's own storage (its stack) for the whole wait.
 *
 * Protocol, for a waiting party W and a waking party K:
 *   W: weft__waiter_prepare(&w);  publish &w where K will find it (under a
 *      lock or with a release CAS);  weft__waiter_wait(&w);
 *   K: take &w from where it was published (exactly one K does this);
 *      weft__waiter_wake(&w);
 * If W finds it need not wait after all (it could not publish), it calls
 * weft__waiter_abandon(&w) instead of waiting. A wake that arrives before W
 * has finished switching away is not lost: see after_switch() in worker.c.
 *
 * Besides this header, other layers may include the two utility headers
 * sched/atomic.h (atomics by memory order) and sched/alloc.h (the heap).
 */
#ifndef WEFT_SCHED_SCHED_H
#define WEFT_SCHED_SCHED_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "include/weft.h"
#include "sched/atomic.h"

struct weft__waiter {
    weft_task *task; /* NULL: a plain thread waits on futex */
    uint32_t futex;  /* thread waiters: 0 waiting, 1 woken */
    /* A woken task normally goes to its waker's LIFO slot, to run next
     * there; no other worker can take it from that slot, so it waits until
     * the waker suspends. A waiter whose waker may well keep running (a
     * lock's holder that takes the lock again at once) sets this after
     * weft__waiter_prepare: it is woken onto the waker's deque instead,
     * where an idle worker can steal it. */
    bool stealable;
};

void weft__waiter_prepare(struct weft__waiter *w);
void weft__waiter_wait(struct weft__waiter *w);
/* Plain threads only: wait until woken (true) or until deadline_ns on the
 * monotonic clock has passed (false: not woken yet, a wake may follow). */
bool weft__waiter_wait_until(struct weft__waiter *w, int64_t deadline_ns);
void weft__waiter_abandon(struct weft__waiter *w);
void weft__waiter_wake(struct weft__waiter *w);

/* --------------------------------------------------------------------------
 * Timers (timer.c): one heap per runtime, served by its timer thread.
 * fire() runs on the timer thread with the heap's lock held, so after
 * weft__timer_del returns it neither runs nor will.
 */
struct weft__timer {
    int64_t deadline_ns;
    uint32_t index; /* under the heap lock: position, or WEFT__TIMER_IDLE */
    void (*fire)(struct weft__timer *tm);
};

#define WEFT__NEVER INT64_MAX

/* tm->index of a timer not in any heap. A timer that may be deleted
 * before it was ever added must start with this index. */
#define WEFT__TIMER_IDLE UINT32_MAX

/* Add tm (deadline_ns and fire set) to rt's heap. 0 or -ENOMEM. */
int weft__timer_add(weft_runtime *rt, struct weft__timer *tm);
/* Remove tm if it has not fired; harmless if it has, or if it was never
 * added and its index is WEFT__TIMER_IDLE. */
void weft__timer_del(weft_runtime *rt, struct weft__timer *tm);
/* A deadline on weft_now()'s clock (double seconds, may be infinite) in
 * ns, saturating at WEFT__NEVER. */
int64_t weft__deadline_ns(double deadline);
/* The deadline `seconds` (>= 0, may be infinite) from now. */
int64_t weft__after_ns(double seconds);
/* The deadline of a public call's timeout in seconds (0 and WEFT_FOREVER
 * included), or -EINVAL for a negative or NaN one: deadlines are never
 * negative, so callers test < 0. */
static inline int64_t weft__timeout_ns(double seconds)
{
    if (seconds != seconds || seconds < 0) /* NaN, negative */
        return -EINVAL;
    return weft__after_ns(seconds);
}

/* What a task waits on, for the task dump (weft_runtime_dump, dump.c).
 * `detail` says which one; the dump prints both. */
enum weft__wait_kind {
    WEFT__WAIT_OTHER = 0, /* not said (weft__wait_init's default) */
    WEFT__WAIT_SLEEP,     /* weft_sleep: detail = deadline, weft__now_ns */
    WEFT__WAIT_JOIN,      /* join, gather, group: detail = the task's id */
    WEFT__WAIT_TASKS,     /* weft_wait, as_completed: detail = tasks needed */
    WEFT__WAIT_LOCK,      /* sync/: detail = the object's address */
    WEFT__WAIT_SEM,
    WEFT__WAIT_EVENT,
    WEFT__WAIT_COND,
    WEFT__WAIT_QUEUE,
    WEFT__WAIT_BARRIER,
    WEFT__WAIT_FD_READ,  /* io/: detail = the fd, readable */
    WEFT__WAIT_FD_WRITE, /* writable */
    WEFT__WAIT_FD_RDWR,  /* either */
    WEFT__WAIT_THREAD,   /* weft_to_thread: detail = fn's address */
    WEFT__WAIT_KINDS
};

/* --------------------------------------------------------------------------
 * Interruptible waits (cancel.c)
 *
 * A wait that a cancellation, an expired timeout scope or its own deadline
 * may end. It has exactly one completer: the party that wins `claimed`
 * (the event waited for, the deadline's timer, or an interrupter) writes
 * the result and wakes the waiter; everyone else leaves it alone. So the
 * waiter is resumed once, and every party that can reach the wait must be
 * done with it before the waiter returns: sources reach it under their own
 * lock or by a CAS that the waiter undoes under the same protocol,
 * interrupters under the waiting task's lock (weft__wait_disarm takes it),
 * the timer under the heap lock (weft__timer_del takes it).
 *
 *   weft__wait_init(&w, NULL, NULL);         // before publishing &w
 *   if ((err = weft__wait_arm(&w)))          // interrupted already:
 *       return weft__wait_abandon(&w), err;  //   nothing was published
 *   publish &w to the source (a queue, a task's joiner field, ...);
 *   (if publishing finds the wait is not needed after all:
 *       weft__wait_abandon(&w), return)
 *   rc = weft__wait_block_until(&w, deadline_ns);  // completed, disarmed
 *   unpublish &w (under the source's protocol);
 *   rc: what the source passed (>= 0, never WEFT__WAIT_TIMED_OUT: a timed
 *       block tells by that value that its timer fired and needs no
 *       removal), WEFT__WAIT_TIMED_OUT, -ENOMEM, or the interrupt,
 *       already as the suspension point must report it
 *
 * With an `interrupt` hook, an interrupt calls the hook (under the task's
 * lock) instead of completing the wait: weft_join uses it to forward the
 * cancellation to the task it joins and go on waiting. weft__wait_arm then
 * calls the hook itself for an interrupt already pending, keeps the wait
 * armed and returns 0. Plain threads have nothing to interrupt: arm
 * returns 0.
 */
struct weft__wait {
    struct weft__waiter waiter;
    uint32_t claimed; /* atomic: 0 until the completer claims it */
    int result;       /* written by the completer before it wakes */
    void (*interrupt)(struct weft__wait *w, int code);
    void *arg;                /* for the hook */
    struct weft__timer timer; /* the deadline, while blocked with one */
    /* What the waiter waits on: written by the waiter before
     * weft__wait_arm, read by the dump under the task's lock once arm has
     * published the wait in t->wait (the lock orders the two). */
    enum weft__wait_kind kind;
    uint64_t detail;
};

/* The result a wait's deadline completes it with. */
#define WEFT__WAIT_TIMED_OUT 1

void weft__wait_init(struct weft__wait *w,
                     void (*interrupt)(struct weft__wait *, int), void *arg);
/* Say what w waits on (the task dump shows it). Call it between
 * weft__wait_init (which sets WEFT__WAIT_OTHER) and weft__wait_arm. */
static inline void weft__wait_set_kind(struct weft__wait *w,
                                       enum weft__wait_kind kind,
                                       uint64_t detail)
{
    w->kind = kind;
    w->detail = detail;
}
int weft__wait_arm(struct weft__wait *w);
void weft__wait_disarm(struct weft__wait *w);
/* Undo init (+ arm) for a wait that will not block: arm returned an
 * interrupt, or publishing found the wait unneeded. Disarms if armed. */
void weft__wait_abandon(struct weft__wait *w);

/* A completed wait's result as its suspension point reports it. A
 * negative result other than -ENOMEM is an interrupt: then a real cancel
 * (which may have arrived since) takes precedence over an expired scope,
 * and the cancellation is recorded as delivered (weft__check_interrupt),
 * so that no caller has to remember either. */
int weft__wait_interrupted(int result);
static inline int weft__wait_outcome(int result)
{
    if (__builtin_expect(result < 0 && result != -ENOMEM, 0))
        return weft__wait_interrupted(result);
    return result;
}

/* Block until w is completed, then disarm it; its outcome. */
static inline int weft__wait_block(struct weft__wait *w)
{
    weft__waiter_wait(&w->waiter);
    weft__wait_disarm(w);
    return weft__wait_outcome(w->result);
}

/* The same, or until deadline_ns passes (then WEFT__WAIT_TIMED_OUT). A
 * task's deadline is a timer in the runtime's heap; if that timer cannot
 * be added, the waiter completes w itself with -ENOMEM (unless a source or
 * an interrupter already has). A thread's deadline is its futex timeout;
 * the thread then completes w itself with WEFT__WAIT_TIMED_OUT, under the
 * same one-completer rule. */
int weft__wait_block_timed(struct weft__wait *w, int64_t deadline_ns);
static inline int weft__wait_block_until(struct weft__wait *w,
                                         int64_t deadline_ns)
{
    if (deadline_ns == WEFT__NEVER)
        return weft__wait_block(w);
    return weft__wait_block_timed(w, deadline_ns);
}
/* Claim w and wake its waiter with `result`. Returns false if another
 * party completed it first (then w must not be touched again). */
bool weft__wait_complete(struct weft__wait *w, int result);
/* The same in two steps, so that the wake can leave a lock's critical
 * section: a claimed wait stays valid (its waiter cannot return) until
 * weft__wait_wake. */
static inline bool weft__wait_claim(struct weft__wait *w, int result)
{
    /* Seq CAS: exactly one completer; the losers must not touch w. */
    if (!weft__cas_seq_u32(&w->claimed, 0, 1))
        return false;
    w->result = result; /* published by the wake's release */
    return true;
}
static inline void weft__wait_wake(struct weft__wait *w)
{
    weft__waiter_wake(&w->waiter);
}

/* The calling task's pending interrupt: -ECANCELED (cancellation
 * requested), -ETIMEDOUT (inside an expired scope) or 0; also 0 on a plain
 * thread. Every suspension point returns what this says, and it records
 * that a cancellation was delivered (see weft_join). */
int weft__check_interrupt(void);

/* Private futexes: sleep while *addr == val (spurious returns happen);
 * wake up to n sleepers. */
void weft__futex_wait(uint32_t *addr, uint32_t val);
void weft__futex_wake(uint32_t *addr, int n);

/* weft_current(), inline: the calling worker thread's slot for its
 * running task (written by that thread only), NULL on other threads. A
 * task that reads it, switches and reads again may be on another worker:
 * it is the same task either way. */
extern __thread weft_task *const *weft__tls_current;

static inline weft_task *weft__current(void)
{
    weft_task *const *slot = weft__tls_current;
    return slot ? *slot : NULL;
}

/* Monotonic clock in nanoseconds. */
int64_t weft__now_ns(void);

/* Statistics kept for the other layers (stats.c), summed by weft_stats_get:
 * n fd events turned into wake-ups (io/reactor.c, per epoll batch), and a
 * job handed to the blocking pool (io/offload.c). On a worker of rt they
 * count in that worker's counters (no atomic); on any other thread, in
 * rt's `outside` counters (an atomic add). rt NULL: the runtime the
 * calling thread works for (a worker's, or the reactor thread's), if any;
 * otherwise nothing is counted. */
void weft__stats_io_events(weft_runtime *rt, unsigned n);
void weft__stats_pool_job(weft_runtime *rt);

/* --------------------------------------------------------------------------
 * The blocking pool in a trace (trace.c, WEFT_TRACE; io/offload.c calls
 * these). A job that a task of a traced runtime hands to the pool is
 * stamped by its submitter; the pool thread that runs it draws it on a
 * track of its own ("blocking <slot>") in that runtime's trace, with an
 * arrow from the submitter's run. trace.c says when a pool thread may
 * write into a runtime's trace.
 */

/* The most pool threads (the pool's bound, whatever the CPU count), and
 * so the pool tracks of a trace. A pool thread's slot is below it. */
#define WEFT__POOL_THREADS_MAX 32u

/* A job's trace stamp: written by its submitter before the job is queued,
 * read-only after. */
struct weft__trace_job {
    weft_runtime *rt;  /* the submitter's runtime if it is traced, or NULL */
    uint64_t task;     /* the submitter's id */
    int64_t submit_ns; /* when it was stamped */
    uint32_t worker;   /* the submitter's worker */
};

/* 1 + the slot of the calling pool thread, 0 on every other thread: set
 * by each pool thread for itself (offload.c), read by trace.c, which puts
 * the thread's events (the wake-ups it does) on the slot's track. */
extern __thread uint32_t weft__tls_pool_slot;

/* From a task: stamp j if the task's runtime is traced, else set j->rt to
 * NULL (untraced, that is all it costs: a call, a TLS load, a test). */
void weft__trace_job_stamp(struct weft__trace_job *j);

/* From a pool thread: the job stamped j (j->rt not NULL) ran fn from
 * start_ns to end_ns. The caller must keep j->rt's trace alive: it holds
 * the won claim of the submitter's wait and has not woken it yet. */
void weft__trace_job(const struct weft__trace_job *j, weft_fn fn,
                     int64_t start_ns, int64_t end_ns);

/* A broken internal invariant: print "weft: <msg>" and abort. */
__attribute__((noreturn, cold, format(printf, 1, 2))) void
weft__panic(const char *fmt, ...);

#define WEFT_ASSERT(cond)                                                      \
    do {                                                                       \
        if (__builtin_expect(!(cond), 0))                                      \
            weft__panic("%s: assertion failed: %s (%s:%d)", __func__, #cond,   \
                        __FILE__, __LINE__);                                   \
    } while (0)

#define WEFT_LIKELY(x)   __builtin_expect(!!(x), 1)
#define WEFT_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* The observability hooks on the scheduling paths (stats.c's delay
 * samples, WEFT_SLOW_TASK_MS, WEFT_TRACE) are compiled in unless the build
 * defines WEFT_OBSERVE=0. Nothing but weft-bench does: it links a second
 * copy of itself against such a build (weft-bench-noobs) to show that the
 * hooks cost nothing measurable when they are off. Counters are not hooks:
 * they stay. */
#ifndef WEFT_OBSERVE
#define WEFT_OBSERVE 1
#endif
#define WEFT__OBSERVED(x) (WEFT_OBSERVE && WEFT_UNLIKELY(x))

#endif /* WEFT_SCHED_SCHED_H */
