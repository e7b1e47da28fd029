/* Timers: one binary min-heap of deadlines per runtime, and a thread that
 * sleeps until the earliest one and fires it. That thread is the runtime's
 * I/O reactor thread (io/reactor.c): it sleeps in epoll, bounded by the
 * earliest deadline, and also turns fd readiness into ready tasks. The heap
 * points to nodes it does not own. Every timed wait of a task (weft_sleep, the
 * sync waits' timeouts, the combinators' time limits) embeds its node in its
 * struct weft__wait, on the task's stack (weft__wait_block_timed, cancel.c);
 * each open timeout scope has its node in its struct weft__scope, on the heap
 * (timeout.c). A timed wait costs one node and one heap slot. Plain
 * threads do not use the heap: their deadline is their futex's timeout.
 *
 * Why a thread and not the workers: timers must fire on time while every
 * worker runs a task that does not yield for a while. The thread fires a
 * timer by completing a wait or by expiring a scope, which interrupts its
 * task; either makes the task ready through the injection queue and wakes
 * a worker (worker.c). The heap stays here, in sched/, and the loop with
 * it, because it runs under the heap's lock; the reactor only provides the
 * sleep (weft__reactor_wait) and the wake-up (weft__reactor_wake).
 *
 * Invariants: the heap, every node's index, and the thread's sleep_until
 * are under `lock`. fire() runs with `lock` held, so a weft__timer_del
 * that returns has seen the node either still in the heap (and removed it:
 * it will never fire) or already fired (completely). The thread sleeps in
 * the reactor until sleep_until; an add that becomes the new earliest
 * deadline lowers sleep_until under the lock and wakes the reactor.
 *
 * Precision: the thread's timer slack is set to 1 ns (the default, 50 us,
 * would make a 1 ms sleep 5% late on average), and the reactor's wait
 * takes nanoseconds (epoll_pwait2).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <time.h>

#include "io/reactor.h"
#include "sched/alloc.h"
#include "sched/internal.h"

int64_t weft__deadline_ns(double deadline)
{
    /* Doubles carry 53 bits: nanoseconds stay exact for 104 days of
     * uptime, and a deadline beyond INT64_MAX ns (292 years) is never. */
    if (!(deadline < 9.2e9))
        return WEFT__NEVER;
    if (deadline <= 0)
        return 0;
    return (int64_t)(deadline * 1e9);
}

int64_t weft__after_ns(double seconds)
{
    double ns = seconds * 1e9;
    /* Never, whatever the time: no need to read the clock. */
    if (!(ns < (double)WEFT__NEVER)) /* also infinity */
        return WEFT__NEVER;
    int64_t now = weft__now_ns();
    if (!(ns < (double)(WEFT__NEVER - now)))
        return WEFT__NEVER;
    return now + (int64_t)ns;
}

double weft_now(void)
{
    return (double)weft__now_ns() / 1e9;
}

/* --------------------------------------------------------------------------
 * The heap (caller holds the lock)
 */

static void heap_set(struct weft__timers *h, uint32_t i, struct weft__timer *t)
{
    h->heap[i] = t;
    t->index = i;
}

static void sift_up(struct weft__timers *h, uint32_t i)
{
    struct weft__timer *t = h->heap[i];
    while (i > 0) {
        uint32_t up = (i - 1) / 2;
        if (h->heap[up]->deadline_ns <= t->deadline_ns)
            break;
        heap_set(h, i, h->heap[up]);
        i = up;
    }
    heap_set(h, i, t);
}

static void sift_down(struct weft__timers *h, uint32_t i)
{
    struct weft__timer *t = h->heap[i];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= h->len)
            break;
        if (c + 1 < h->len &&
            h->heap[c + 1]->deadline_ns < h->heap[c]->deadline_ns)
            c++;
        if (t->deadline_ns <= h->heap[c]->deadline_ns)
            break;
        heap_set(h, i, h->heap[c]);
        i = c;
    }
    heap_set(h, i, t);
}

static void heap_remove(struct weft__timers *h, struct weft__timer *t)
{
    uint32_t i = t->index;
    t->index = WEFT__TIMER_IDLE;
    struct weft__timer *last = h->heap[--h->len];
    if (last == t)
        return;
    heap_set(h, i, last);
    if (i > 0 && h->heap[(i - 1) / 2]->deadline_ns > last->deadline_ns)
        sift_up(h, i);
    else
        sift_down(h, i);
}

static int heap_grow(struct weft__timers *h)
{
    uint32_t cap = h->cap ? 2 * h->cap : 256;
    struct weft__timer **heap = weft__realloc(h->heap, cap * sizeof(*heap));
    if (!heap)
        return -ENOMEM;
    h->heap = heap;
    h->cap = cap;
    return 0;
}

/* Caller holds the lock. Whether the thread sleeps past `deadline` and
 * must be woken (once per earlier deadline). */
static bool need_wake(struct weft__timers *h, int64_t deadline)
{
    if (deadline >= h->sleep_until)
        return false;
    h->sleep_until = deadline;
    return true;
}

int weft__timer_add(weft_runtime *rt, struct weft__timer *tm)
{
    struct weft__timers *h = &rt->timers;
    pthread_mutex_lock(&h->lock);
    if (h->len == h->cap && heap_grow(h) < 0) {
        pthread_mutex_unlock(&h->lock);
        tm->index = WEFT__TIMER_IDLE;
        return -ENOMEM;
    }
    heap_set(h, h->len++, tm);
    sift_up(h, tm->index);
    bool wake = tm->index == 0 && need_wake(h, tm->deadline_ns);
    pthread_mutex_unlock(&h->lock);
    if (wake)
        weft__reactor_wake(rt->reactor);
    return 0;
}

void weft__timer_del(weft_runtime *rt, struct weft__timer *tm)
{
    struct weft__timers *h = &rt->timers;
    pthread_mutex_lock(&h->lock);
    if (tm->index != WEFT__TIMER_IDLE)
        heap_remove(h, tm);
    pthread_mutex_unlock(&h->lock);
}

/* --------------------------------------------------------------------------
 * The timer thread
 */

static void *timer_main(void *arg)
{
    weft_runtime *rt = arg;
    struct weft__timers *h = &rt->timers;
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    /* The tasks the timers wake go to the injection queue together. */
    struct weft__batch batch = {.rt = rt};
    weft__tls_batch = &batch;
    weft__tls_reactor_of = rt; /* its trace events go to the reactor's */
    pthread_mutex_lock(&h->lock);
    while (!h->stop) {
        int64_t now = weft__now_ns();
        uint64_t fired = 0;
        while (h->len > 0 && h->heap[0]->deadline_ns <= now) {
            struct weft__timer *t = h->heap[0];
            heap_remove(h, t);
            t->fire(t);
            fired++;
        }
        if (fired) {
            /* This thread is the counter's only writer. */
            weft__count(&rt->outside.timers_fired, fired);
            if (WEFT__OBSERVED(rt->trace != NULL))
                weft__trace_timers(rt, now, fired);
        }
        h->sleep_until = h->len > 0 ? h->heap[0]->deadline_ns : WEFT__NEVER;
        int64_t until = h->sleep_until;
        pthread_mutex_unlock(&h->lock);
        weft__batch_flush(&batch);
        /* A wake-up sent since the unlock is not lost: the eventfd stays
         * readable until this thread drains it. */
        weft__reactor_wait(rt->reactor, until);
        weft__batch_flush(&batch);
        pthread_mutex_lock(&h->lock);
    }
    pthread_mutex_unlock(&h->lock);
    weft__tls_batch = NULL;
    weft__tls_reactor_of = NULL;
    return NULL;
}

int weft__timers_start(weft_runtime *rt)
{
    struct weft__timers *h = &rt->timers;
    pthread_mutex_init(&h->lock, NULL);
    h->heap = NULL;
    h->len = h->cap = 0;
    h->sleep_until = WEFT__NEVER;
    h->stop = false;
    int err = pthread_create(&h->thread, NULL, timer_main, rt);
    if (err) {
        pthread_mutex_destroy(&h->lock);
        return -err;
    }
    pthread_setname_np(h->thread, "weft-reactor");
    return 0;
}

void weft__timers_stop(weft_runtime *rt)
{
    struct weft__timers *h = &rt->timers;
    pthread_mutex_lock(&h->lock);
    if (h->len != 0)
        weft__panic("weft__timers_stop: %u timers left after every task "
                    "ended",
                    h->len);
    h->stop = true;
    need_wake(h, -1);
    pthread_mutex_unlock(&h->lock);
    weft__reactor_wake(rt->reactor);
    pthread_join(h->thread, NULL);
    weft__free(h->heap);
    pthread_mutex_destroy(&h->lock);
}

/* --------------------------------------------------------------------------
 * Sleeping
 */

static void thread_sleep_until(int64_t deadline_ns)
{
    if (deadline_ns == WEFT__NEVER)
        deadline_ns = INT64_MAX - 1000000000; /* ~292 years */
    struct timespec ts = {.tv_sec = deadline_ns / 1000000000,
                          .tv_nsec = deadline_ns % 1000000000};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

/* Sleep until deadline_ns: a plain thread blocks (and cannot be
 * interrupted), a task waits on a timer (none for WEFT__NEVER). */
static int sleep_until_ns(int64_t deadline_ns)
{
    if (!weft_current()) {
        thread_sleep_until(deadline_ns);
        return 0;
    }
    struct weft__wait w;
    weft__wait_init(&w, NULL, NULL);
    weft__wait_set_kind(&w, WEFT__WAIT_SLEEP, (uint64_t)deadline_ns);
    int rc = weft__wait_arm(&w);
    if (rc) {
        weft__wait_abandon(&w);
        return rc;
    }
    rc = weft__wait_block_until(&w, deadline_ns);
    /* TIMED_OUT: slept the whole time. Else -ENOMEM or an interrupt. */
    return rc == WEFT__WAIT_TIMED_OUT ? 0 : rc;
}

int weft_sleep_until(double deadline)
{
    if (isnan(deadline))
        return -EINVAL;
    int64_t deadline_ns = weft__deadline_ns(deadline);
    /* Passed already: a task yields, with no timer. */
    if (weft_current() && deadline_ns <= weft__now_ns())
        return weft_yield();
    return sleep_until_ns(deadline_ns);
}

int weft_sleep(double seconds)
{
    if (seconds == 0) /* -0.0 too */
        return weft_current() ? weft_yield() : 0;
    /* No second look at the clock, as weft_sleep_until takes: a deadline
     * `seconds` > 0 after the reading has not passed (one under 1 ns has,
     * and its timer fires at once). */
    int64_t deadline_ns = weft__timeout_ns(seconds);
    return deadline_ns < 0 ? (int)deadline_ns : sleep_until_ns(deadline_ns);
}
