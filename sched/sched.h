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
 * has finished switching away is not lost: see task_park() in worker.c.
 */
#ifndef WEFT_SCHED_SCHED_H
#define WEFT_SCHED_SCHED_H

#include <stdint.h>

#include "include/weft.h"

struct weft__waiter {
    weft_task *task; /* NULL: a plain thread waits on futex */
    uint32_t futex;  /* thread waiters: 0 waiting, 1 woken */
};

void weft__waiter_prepare(struct weft__waiter *w);
void weft__waiter_wait(struct weft__waiter *w);
void weft__waiter_abandon(struct weft__waiter *w);
void weft__waiter_wake(struct weft__waiter *w);

/* Monotonic clock in nanoseconds. */
int64_t weft__now_ns(void);

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

#endif /* WEFT_SCHED_SCHED_H */
