/* The I/O reactor (DESIGN.md section 4): readiness of fds becomes ready
 * tasks.
 *
 * Each runtime has one reactor: an epoll instance in edge-triggered mode
 * and an eventfd that wakes it. Its thread is the runtime's timer thread
 * (sched/timer.c), which blocks in weft__reactor_wait until the earliest
 * timer, an fd event or a wake-up; the wake-ups come from timer.c when a
 * new timer becomes the earliest. A worker that runs out of work polls the
 * same epoll set without blocking (weft__reactor_poll) before it parks and
 * runs what is ready itself, with no hop through the reactor thread (a
 * cross-CPU wake-up each way); the reactor thread is the one that blocks.
 *
 * Registration. An fd is added to an epoll set once, the first time a
 * task waits on it (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET), and stays
 * there until weft_fd_forget / weft_fd_close. Per-fd state lives in a
 * process-wide table indexed by the fd number (fds are process-wide):
 * chunks of 1024 slots, allocated on first use and never freed, so an
 * event that arrives for an fd after it was forgotten still finds valid
 * memory. Each slot has a generation, bumped by every forget; an event
 * carries the generation it was registered under (epoll data = fd | gen <<
 * 32) and is ignored if the slot has moved on.
 *
 * No lost wake-up. Each slot counts the edges seen per direction (`seq`,
 * bumped under the slot lock by whoever reaps the event). A waiter reads
 * seq before its syscall and, after EAGAIN, takes the lock and compares:
 * if seq moved, an edge came after the read, so it tries again; if not, it
 * queues itself under the same lock. The reaper bumps seq and takes the
 * queued waiters in one critical section, so either the waiter sees the
 * bump or the reaper sees the waiter. With EPOLLET an edge is reported
 * once, which is why it must never fall between the two.
 *
 * Every waiter of a direction is woken on an edge (each retries its
 * syscall; one that gets EAGAIN again waits again): a read edge cannot
 * know how many readers its bytes satisfy.
 *
 * Waits are struct weft__wait (sched/sched.h): a waiter is completed once,
 * by the reaper (result 0), its deadline, an interrupt, or a forget
 * (-EBADF). A reaper claims waiters under the slot lock and unlinks only
 * those it claimed; it wakes them after the unlock. A waiter completed
 * otherwise unlinks itself under the lock before it returns.
 *
 * Armed. A thread asleep in epoll_wait is woken by every edge, and each
 * such wake-up costs a few microseconds of CPU on both sides. While every
 * worker runs, the workers take the events themselves (they poll whenever
 * they run out of work), so the thread steps aside: it disarms and sleeps
 * in a second epoll set that holds only the eventfd, for its timers. A
 * worker that parks arms it again (and wakes it, if it had disarmed), so
 * that fd events always have a taker: a running worker or the thread.
 * Disarming is lazy: the thread disarms only when it wakes and finds no
 * worker parked. The hand-shake is Dekker's: the parking worker counts
 * itself parked, fences (worker.c's W2), then reads `armed`; the thread
 * clears `armed`, fences, then reads the parked count. One of them sees
 * the other.
 *
 * Rejected: EPOLLONESHOT re-arming per wait (an epoll_ctl per wait, which
 * the issue forbids, and a syscall on every park); one reactor for the
 * process (each runtime's timers bound its reactor's wait, and a runtime
 * freed while another runs must not leave the other without its thread).
 */
#include "io/reactor.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "sched/alloc.h"

#define CHUNK_BITS  10
#define CHUNK_SLOTS (1u << CHUNK_BITS)
#define MAX_CHUNKS  1024u /* fds below 2^20 */
#define WAKE_TAG    UINT64_MAX
#define WAIT_EVENTS 256
#define POLL_EVENTS 64

struct weft__reactor {
    struct weft__reactor_head head; /* nfds: see reactor.h */
    int epfd;                       /* immutable: the fds and evfd */
    int wake_ep; /* immutable: evfd alone, for the thread while disarmed */
    int evfd;    /* immutable; level-triggered in both, drained by the thread */
    /* Whether the thread watches the fds (see "Armed" above). Any thread,
     * atomic. */
    uint32_t armed;
    const uint32_t *nr_parked; /* the runtime's parked workers, atomic */
};

/* One waiter, on the waiting task's stack, queued on one or both
 * directions' lists. */
struct io_waiter {
    struct weft__wait wait;
    struct {
        struct io_waiter *next, *prev; /* under the slot lock, while queued */
    } link[2];
    bool queued[2];         /* under the slot lock */
    struct io_waiter *woke; /* the reaper's list of claimed waiters */
};

struct fd_slot {
    weft__spinlock lock;
    uint32_t gen;                 /* under lock */
    struct weft__reactor *owner;  /* under lock: registered with, or NULL */
    uint32_t seq[2];              /* atomic; written under lock: edges seen */
    struct io_waiter *waiters[2]; /* under lock: per direction */
};

/* chunks[i]: slots of fds i*1024 .. i*1024+1023. Any thread, atomic:
 * installed once by CAS, never freed. */
static struct fd_slot *chunks[MAX_CHUNKS];

static struct fd_slot *slot_peek(int fd)
{
    unsigned c = (unsigned)fd >> CHUNK_BITS;
    if (c >= MAX_CHUNKS)
        return NULL;
    /* Acquire: pairs with the CAS that installed the zeroed chunk. */
    struct fd_slot *chunk = weft__load_acq_ptr(&chunks[c]);
    return chunk ? &chunk[(unsigned)fd & (CHUNK_SLOTS - 1)] : NULL;
}

/* fd in 0 .. MAX_CHUNKS * CHUNK_SLOTS - 1. NULL: out of memory. */
static struct fd_slot *slot_get(int fd)
{
    unsigned c = (unsigned)fd >> CHUNK_BITS;
    struct fd_slot *chunk = weft__load_acq_ptr(&chunks[c]);
    if (!chunk) {
        struct fd_slot *fresh = weft__calloc(CHUNK_SLOTS, sizeof(*fresh));
        if (!fresh)
            return NULL;
        for (unsigned i = 0; i < CHUNK_SLOTS; i++)
            weft__spin_init(&fresh[i].lock);
        /* Seq CAS: publishes the initialised chunk (pairs with the acquire
         * loads above); a loser frees its copy and uses the winner's. */
        if (weft__cas_seq_ptr_val(&chunks[c], NULL, fresh, (void **)&chunk)) {
            chunk = fresh;
        } else {
            weft__free(fresh);
        }
    }
    return &chunk[(unsigned)fd & (CHUNK_SLOTS - 1)];
}

/* --------------------------------------------------------------------------
 * Reaping events
 */

/* Caller holds s->lock. Take w off every list it is on. */
static void waiter_unlink(struct fd_slot *s, struct io_waiter *w)
{
    for (int d = 0; d < 2; d++) {
        if (!w->queued[d])
            continue;
        if (w->link[d].prev)
            w->link[d].prev->link[d].next = w->link[d].next;
        else
            s->waiters[d] = w->link[d].next;
        if (w->link[d].next)
            w->link[d].next->link[d].prev = w->link[d].prev;
        w->queued[d] = false;
    }
}

/* Caller holds s->lock. */
static void waiter_link(struct fd_slot *s, int d, struct io_waiter *w)
{
    w->link[d].prev = NULL;
    w->link[d].next = s->waiters[d];
    if (w->link[d].next)
        w->link[d].next->link[d].prev = w;
    s->waiters[d] = w;
    w->queued[d] = true;
}

/* Caller holds s->lock. Claim every waiter of dir with `result`, unlink
 * them and chain them onto *woken (through woke) for waking after the
 * unlock. Waiters already claimed by someone else stay: they unlink
 * themselves. Bumps seq[dir]. */
static void take_waiters(struct fd_slot *s, int dir, int result,
                         struct io_waiter **woken)
{
    /* Relaxed: written under the lock only; the lock orders it against
     * the waiter's locked re-read. Readers outside the lock
     * (weft__io_seq) only decide whether to retry. */
    weft__store_rlx_u32(&s->seq[dir], s->seq[dir] + 1);
    for (struct io_waiter *w = s->waiters[dir], *next; w; w = next) {
        next = w->link[dir].next;
        if (!weft__wait_claim(&w->wait, result))
            continue;
        waiter_unlink(s, w);
        w->woke = *woken;
        *woken = w;
    }
}

static void wake_all(struct io_waiter *w)
{
    while (w) {
        /* Read before the wake: the woken waiter may return at once. */
        struct io_waiter *next = w->woke;
        weft__wait_wake(&w->wait);
        w = next;
    }
}

static void reap(const struct epoll_event *ev)
{
    int fd = (int)(uint32_t)ev->data.u64;
    uint32_t gen = (uint32_t)(ev->data.u64 >> 32);
    struct fd_slot *s = slot_peek(fd);
    if (!s)
        return;
    struct io_waiter *woken = NULL;
    weft__spin_lock(&s->lock);
    if (s->gen == gen && s->owner) {
        uint32_t e = ev->events;
        bool err = e & (EPOLLERR | EPOLLHUP);
        if (err || (e & (EPOLLIN | EPOLLRDHUP | EPOLLPRI)))
            take_waiters(s, 0, 0, &woken);
        if (err || (e & EPOLLOUT))
            take_waiters(s, 1, 0, &woken);
    }
    weft__spin_unlock(&s->lock);
    wake_all(woken);
}

/* Reap n events; returns how many were fd events. */
static unsigned reap_all(struct weft__reactor *r, struct epoll_event *ev, int n,
                         bool drain_wake)
{
    unsigned fds = 0;
    for (int i = 0; i < n; i++) {
        if (ev[i].data.u64 == WAKE_TAG) {
            if (drain_wake) {
                uint64_t v;
                if (read(r->evfd, &v, sizeof(v)) < 0) {
                    /* EAGAIN: drained already; nothing else can fail on
                     * an eventfd read of 8 bytes. */
                }
            }
            continue;
        }
        reap(&ev[i]);
        fds++;
    }
    if (fds)
        weft__stats_io_events(NULL, fds);
    return fds;
}

/* The thread: whether to watch the fds this time; disarms if no worker
 * is parked. */
static bool watch_fds(struct weft__reactor *r)
{
    /* Relaxed: `armed` is re-read after the fence below before anything
     * depends on it being clear. */
    if (!weft__load_rlx_u32(&r->armed))
        return false;
    /* Relaxed: a stale non-zero count only keeps the thread armed once
     * more. */
    if (weft__load_rlx_u32(r->nr_parked) != 0)
        return true;
    weft__store_rlx_u32(&r->armed, 0);
    /* The thread's side of the hand-shake: `armed` cleared before the
     * parked count is read. Pairs with the parking worker's fence (W2 in
     * worker.c) between its count and its read of `armed`. */
    weft__fence_seq();
    if (weft__load_rlx_u32(r->nr_parked) == 0)
        return false;
    weft__store_rlx_u32(&r->armed, 1);
    return true;
}

void weft__reactor_arm(struct weft__reactor *r)
{
    /* Relaxed load, seq exchange: the caller fenced after counting itself
     * parked (see watch_fds); the exchange makes exactly one arming party
     * send the wake-up. */
    if (weft__load_rlx_u32(&r->head.nfds) == 0 || weft__load_rlx_u32(&r->armed))
        return;
    if (weft__xchg_seq_u32(&r->armed, 1) == 0)
        weft__reactor_wake(r);
}

void weft__reactor_wait(struct weft__reactor *r, int64_t deadline_ns)
{
    struct epoll_event ev[WAIT_EVENTS];
    int ep = watch_fds(r) ? r->epfd : r->wake_ep;
    int n;
    if (deadline_ns == WEFT__NEVER) {
        n = epoll_wait(ep, ev, WAIT_EVENTS, -1);
    } else {
        int64_t left = deadline_ns - weft__now_ns();
        if (left < 0)
            left = 0;
        struct timespec ts = {.tv_sec = left / 1000000000,
                              .tv_nsec = left % 1000000000};
        /* epoll_pwait2 (Linux 5.11) takes the timeout in ns: timers fire
         * on time, where epoll_wait's ms would make every sleep late. */
        n = epoll_pwait2(ep, ev, WAIT_EVENTS, &ts, NULL);
        if (n < 0 && errno == ENOSYS)
            n = epoll_wait(ep, ev, WAIT_EVENTS,
                           (int)((left + 999999) / 1000000));
    }
    if (n > 0)
        reap_all(r, ev, n, true);
}

void weft__reactor_wake(struct weft__reactor *r)
{
    uint64_t one = 1;
    /* Cannot fail but for an overflowing counter (2^64 - 2 wakes without a
     * read), which only makes the wake-up pending already. */
    if (write(r->evfd, &one, sizeof(one)) < 0) {
    }
}

unsigned weft__reactor_poll(struct weft__reactor *r)
{
    struct epoll_event ev[POLL_EVENTS];
    int n = epoll_wait(r->epfd, ev, POLL_EVENTS, 0);
    if (n <= 0)
        return 0;
    /* The wake-up is the thread's: it drains the eventfd. */
    return reap_all(r, ev, n, false);
}

/* --------------------------------------------------------------------------
 * Waiting on an fd
 */

uint64_t weft__io_seq(int fd)
{
    struct fd_slot *s = slot_peek(fd);
    if (!s)
        return 0;
    /* Relaxed: an old value only makes the waiter retry its syscall. */
    return weft__load_rlx_u32(&s->seq[0]) |
           (uint64_t)weft__load_rlx_u32(&s->seq[1]) << 32;
}

/* Caller holds s->lock. Register fd with r. */
static int slot_register(struct fd_slot *s, struct weft__reactor *r, int fd)
{
    struct epoll_event ev = {
        .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
        .data.u64 = (uint64_t)(uint32_t)fd | (uint64_t)s->gen << 32,
    };
    if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return -errno;
    s->owner = r;
    /* Seq RMW: the first fd must not go unwatched while every worker is
     * parked and none armed the thread (they saw nfds == 0): the count
     * goes up before the parked count is read. Pairs with the parking
     * worker's fence before it reads nfds (weft__reactor_arm). */
    weft__faa_seq_u32(&r->head.nfds, 1);
    if (weft__load_rlx_u32(r->nr_parked) != 0)
        weft__reactor_arm(r);
    return 0;
}

int weft__io_wait(int fd, int dirs, uint64_t seq, int64_t deadline_ns)
{
    weft_task *self = weft__current();
    WEFT_ASSERT(self);
    if (fd < 0)
        return -EBADF;
    if ((unsigned)fd >> CHUNK_BITS >= MAX_CHUNKS)
        return -EMFILE; /* beyond the table: documented in weft.h */
    struct fd_slot *s = slot_get(fd);
    if (!s)
        return -ENOMEM;
    struct io_waiter w;
    weft__wait_init(&w.wait, NULL, NULL);
    weft__wait_set_kind(&w.wait,
                        dirs == 1   ? WEFT__WAIT_FD_READ
                        : dirs == 2 ? WEFT__WAIT_FD_WRITE
                                    : WEFT__WAIT_FD_RDWR,
                        (uint64_t)fd);
    int rc = weft__wait_arm(&w.wait);
    if (rc) {
        weft__wait_abandon(&w.wait);
        return rc;
    }
    weft__spin_lock(&s->lock);
    if (!s->owner) {
        rc =
            slot_register(s, weft__runtime_reactor(weft_runtime_current()), fd);
        if (rc < 0) {
            weft__spin_unlock(&s->lock);
            weft__wait_abandon(&w.wait);
            return rc;
        }
    }
    w.queued[0] = w.queued[1] = false;
    for (int d = 0; d < 2; d++) {
        if (!(dirs & (1 << d)))
            continue;
        /* Relaxed: under the lock, which every writer of seq holds. */
        if (weft__load_rlx_u32(&s->seq[d]) != (uint32_t)(seq >> (32 * d))) {
            waiter_unlink(s, &w);
            weft__spin_unlock(&s->lock);
            weft__wait_abandon(&w.wait);
            return 0;
        }
        waiter_link(s, d, &w);
    }
    weft__spin_unlock(&s->lock);

    rc = weft__wait_block_until(&w.wait, deadline_ns);
    /* Unlinked already unless someone other than a reaper completed the
     * wait: look under the lock (the reaper unlinks under it). */
    weft__spin_lock(&s->lock);
    waiter_unlink(s, &w);
    weft__spin_unlock(&s->lock);
    return rc == WEFT__WAIT_TIMED_OUT ? -ETIMEDOUT : rc;
}

/* Caller holds s->lock. */
static void slot_forget(struct fd_slot *s, int fd, struct io_waiter **woken)
{
    s->gen++;
    if (s->owner) {
        /* Fails with EBADF if fd was closed already (then the kernel
         * dropped it from the set itself). */
        epoll_ctl(s->owner->epfd, EPOLL_CTL_DEL, fd, NULL);
        /* Seq RMW only because ck_pr has no weaker one: a counter. */
        weft__faa_seq_u32(&s->owner->head.nfds, (uint32_t)-1);
        s->owner = NULL;
    }
    take_waiters(s, 0, -EBADF, woken);
    take_waiters(s, 1, -EBADF, woken);
}

int weft__io_forget(int fd)
{
    if (fd < 0)
        return -EBADF;
    struct fd_slot *s = slot_peek(fd);
    if (!s)
        return 0;
    struct io_waiter *woken = NULL;
    weft__spin_lock(&s->lock);
    slot_forget(s, fd, &woken);
    weft__spin_unlock(&s->lock);
    wake_all(woken);
    return 0;
}

/* --------------------------------------------------------------------------
 * Lifecycle
 */

/* SIGPIPE's default action kills the process on a write to a closed pipe
 * or socket; a program that installed no handler gets -EPIPE instead. */
static void ignore_sigpipe(void)
{
    struct sigaction old;
    if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL &&
        !(old.sa_flags & SA_SIGINFO)) {
        struct sigaction ign = {.sa_handler = SIG_IGN};
        sigaction(SIGPIPE, &ign, NULL);
    }
}

int weft__reactor_new(const uint32_t *nr_parked, struct weft__reactor **out)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, ignore_sigpipe);

    struct weft__reactor *r = weft__calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    int err;
    r->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (r->epfd < 0) {
        err = -errno;
        goto err_free;
    }
    r->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->evfd < 0) {
        err = -errno;
        goto err_close_ep;
    }
    r->wake_ep = epoll_create1(EPOLL_CLOEXEC);
    if (r->wake_ep < 0) {
        err = -errno;
        goto err_close_ev;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = WAKE_TAG};
    if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->evfd, &ev) < 0 ||
        epoll_ctl(r->wake_ep, EPOLL_CTL_ADD, r->evfd, &ev) < 0) {
        err = -errno;
        goto err_close_wake;
    }
    r->nr_parked = nr_parked;
    *out = r;
    return 0;
err_close_wake:
    close(r->wake_ep);
err_close_ev:
    close(r->evfd);
err_close_ep:
    close(r->epfd);
err_free:
    weft__free(r);
    return err;
}

void weft__reactor_free(struct weft__reactor *r)
{
    /* Forget the fds still registered here (the program never closed them
     * through weft): no task of this runtime waits on them any more, but
     * tasks of another runtime might, and must not wait on a dead epoll
     * set. Bounded by the chunks ever allocated. */
    for (unsigned c = 0; c < MAX_CHUNKS && weft__load_rlx_u32(&r->head.nfds);
         c++) {
        struct fd_slot *chunk = weft__load_acq_ptr(&chunks[c]);
        if (!chunk)
            continue;
        for (unsigned i = 0; i < CHUNK_SLOTS; i++) {
            struct fd_slot *s = &chunk[i];
            struct io_waiter *woken = NULL;
            weft__spin_lock(&s->lock);
            if (s->owner == r)
                slot_forget(s, (int)(c * CHUNK_SLOTS + i), &woken);
            weft__spin_unlock(&s->lock);
            wake_all(woken);
        }
    }
    close(r->wake_ep);
    close(r->evfd);
    close(r->epfd);
    weft__free(r);
}
