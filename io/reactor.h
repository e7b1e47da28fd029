/* The I/O reactor's interface, to sched/ (which owns one reactor per
 * runtime and drives it) and to io/fd.c (which waits on fds through it).
 *
 * sched/ knows a reactor only as "block until an fd event, a wake-up or a
 * deadline" (its timer thread, timer.c, is the reactor thread) and "poll
 * without blocking" (a worker about to park, worker.c); it never sees an
 * fd. io/ knows the scheduler only through sched/sched.h.
 */
#ifndef WEFT_IO_REACTOR_H
#define WEFT_IO_REACTOR_H

#include <stdint.h>

#include "sched/sched.h"

struct weft__reactor;

/* The part of a reactor that callers read inline. */
struct weft__reactor_head {
    /* Fds registered with the reactor. Any thread, atomic; written under
     * their slot's lock. Nobody polls while it is 0. */
    uint32_t nfds;
};

/* Create a runtime's reactor: an epoll instance and an eventfd to wake
 * it. nr_parked: the runtime's count of parked workers (atomic), which
 * tells the thread whether the workers take fd events themselves. 0, or
 * a negative errno. */
int weft__reactor_new(const uint32_t *nr_parked, struct weft__reactor **out);
/* Free it, once no task of its runtime is alive and its thread has
 * stopped: fds registered with it are forgotten (a later wait registers
 * them with the waiter's own runtime). */
void weft__reactor_free(struct weft__reactor *r);

/* The reactor thread: block until an fd event, weft__reactor_wake or
 * deadline_ns (WEFT__NEVER: none), making ready every task whose fd became
 * ready. Tasks of the thread's runtime go to its batch (weft__tls_batch). */
void weft__reactor_wait(struct weft__reactor *r, int64_t deadline_ns);
/* Make weft__reactor_wait return soon (now, or at once next time). Any
 * thread. */
void weft__reactor_wake(struct weft__reactor *r);

/* A worker about to park, after counting itself parked and fencing: make
 * the thread watch the fds. */
void weft__reactor_arm(struct weft__reactor *r);

/* Whether any fd is registered with r: worth polling. Relaxed: a
 * heuristic; an fd registered just now by another worker belongs to a
 * task that is parking there, and that worker polls before it parks. */
static inline bool weft__reactor_has_fds(const struct weft__reactor *r)
{
    return weft__load_rlx_u32(&((const struct weft__reactor_head *)r)->nfds) !=
           0;
}

/* A worker: take what is ready without blocking and make those tasks
 * ready. Returns how many fd events it took. */
unsigned weft__reactor_poll(struct weft__reactor *r);

/* For io/fd.c: wait until fd may be ready in `dirs` (bit 0 read, bit 1
 * write).
 *
 *   seq = weft__io_seq(fd);    // before the syscall
 *   syscall: EAGAIN
 *   rc = weft__io_wait(fd, dirs, seq, deadline_ns);
 *
 * Returns 0 (try the syscall again: an edge came after seq was read, or the
 * reactor reported one), -ETIMEDOUT (deadline), -ECANCELED / -ETIMEDOUT
 * (interrupts), -EBADF (weft_fd_forget ran), -EMFILE (fd beyond the
 * table), -ENOMEM, or epoll_ctl's error (-EPERM: the fd does not support
 * polling). Calling task only. */
uint64_t weft__io_seq(int fd);
int weft__io_wait(int fd, int dirs, uint64_t seq, int64_t deadline_ns);
/* Forget fd (weft_fd_forget): deregister it, wake its waiters with
 * -EBADF. */
int weft__io_forget(int fd);

/* The reactor of rt (sched/runtime.c). */
struct weft__reactor *weft__runtime_reactor(weft_runtime *rt);

#endif /* WEFT_IO_REACTOR_H */
