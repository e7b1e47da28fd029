/* The task dump: weft_runtime_dump, and SIGUSR1 dumps (WEFT_DUMP_ON_SIGNAL).
 *
 * A dump copies, then writes. Each registry shard is copied under its lock
 * (which keeps its tasks' handles alive), and for each waiting task what
 * it waits on is read under the task's lock, the lock its interrupters
 * take to reach its published wait (cancel.c): while t->wait points to a
 * struct weft__wait under t->lock, that wait is alive, and its kind and
 * detail were written before weft__wait_arm published it under the same
 * lock. Shard lock, then task lock: the order weft__runtime_cancel_all
 * takes too. Nothing is written to the fd under a lock, so a slow reader
 * of the dump holds up no spawn, join or cancel.
 *
 * Waits that are not published in t->wait (a raw weft__waiter, or a
 * weft__wait that is never armed) show as "waiting" without a kind, and
 * so do armed waits whose kind was never set (WEFT__WAIT_OTHER). Every
 * wait in sync/ is armed with its kind, its uninterruptible ones (the
 * lock a condition waiter takes back) included: sync/waitq.c.
 *
 * SIGUSR1. The handler does the one async-signal-safe thing it needs: it
 * posts a semaphore (sem_post is async-signal-safe, and unlike a pipe or
 * an eventfd it holds no file descriptor, which programs and tests that
 * count their fds would see). A dumper thread (one per process, started
 * with the first runtime that asks for it, detached, as the blocking
 * pool's threads are) waits on it and dumps every listed runtime to
 * stderr, holding the list's lock, which weft_runtime_free takes to
 * unlist its runtime: no runtime is freed while it is dumped. Signals
 * that arrive during a dump are served by one more dump.
 */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sched/alloc.h"
#include "sched/internal.h"

#define INLINE_TAG ((uintptr_t)1) /* as in cancel.c */

/* One task, as copied. */
struct entry {
    uint64_t id;
    char name[32];
    uint32_t where;
    int64_t born_ns; /* 0: not recorded */
    enum weft__wait_kind kind;
    uint64_t detail;
    bool published;     /* t->wait was set */
    uint64_t inline_id; /* a child running inline on its stack, or 0 */
};

/* What t waits on, read under t->lock. */
static void copy_wait(weft_task *t, struct entry *e)
{
    weft__spin_lock(&t->lock);
    void *x = t->wait;
    if ((uintptr_t)x & INLINE_TAG) {
        /* The child parks on t's stack: it is alive while t->wait holds
         * it, as t (its joiner) is suspended below it. */
        e->inline_id = ((weft_task *)((uintptr_t)x & ~INLINE_TAG))->id;
    } else if (x) {
        const struct weft__wait *w = x;
        e->published = true;
        e->kind = w->kind;
        e->detail = w->detail;
    }
    weft__spin_unlock(&t->lock);
}

/* Copy the live tasks of shard s into e[n..cap); returns the new n, which
 * counts the tasks that did not fit too. */
static size_t copy_shard(struct weft__shard *s, struct entry *e, size_t n,
                         size_t cap)
{
    weft__spin_lock(&s->lock);
    for (uint32_t slot = 0; slot < s->used; slot++) {
        if (s->slots[slot] & 1)
            continue; /* a free slot */
        weft_task *t = (weft_task *)s->slots[slot];
        /* Acquire: as in snapshot_shard (task.c). */
        if (weft__load_acq_ptr(&t->joiner) == WEFT__JOIN_DONE)
            continue;
        if (n < cap) {
            struct entry *x = &e[n];
            memset(x, 0, sizeof(*x));
            x->id = t->id;
            if (t->name)
                strcpy(x->name, t->name); /* under the shard's lock */
            /* Relaxed: a snapshot. */
            x->where = weft__load_rlx_u32(&t->where);
            x->born_ns = s->born ? s->born[slot] : 0;
            if (weft__where_state(x->where) == WEFT_TASK_WAITING)
                copy_wait(t, x);
        }
        n++;
    }
    weft__spin_unlock(&s->lock);
    return n;
}

/* --------------------------------------------------------------------------
 * Writing
 */

struct writer {
    int fd;
    int err; /* the first write error */
    size_t len;
    char buf[4096];
};

static void flush(struct writer *w)
{
    size_t off = 0;
    while (off < w->len && !w->err) {
        ssize_t r = write(w->fd, w->buf + off, w->len - off);
        if (r < 0 && errno != EINTR)
            w->err = -errno;
        else if (r > 0)
            off += (size_t)r;
    }
    w->len = 0;
}

static void say(struct writer *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void say(struct writer *w, const char *fmt, ...)
{
    if (w->len > sizeof(w->buf) - 512)
        flush(w);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(w->buf + w->len, sizeof(w->buf) - w->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        w->len += (size_t)n < sizeof(w->buf) - w->len
                      ? (size_t)n
                      : sizeof(w->buf) - w->len - 1;
}

static const char *const state_names[] = {
    [WEFT_TASK_NEW] = "new",
    [WEFT_TASK_READY] = "ready",
    [WEFT_TASK_RUNNING] = "running",
    [WEFT_TASK_WAITING] = "waiting",
};

static const char *const sync_names[] = {
    [WEFT__WAIT_LOCK] = "lock",   [WEFT__WAIT_SEM] = "semaphore",
    [WEFT__WAIT_EVENT] = "event", [WEFT__WAIT_COND] = "condition",
    [WEFT__WAIT_QUEUE] = "queue", [WEFT__WAIT_BARRIER] = "barrier",
};

/* ": what it waits on", for a waiting task. */
static void say_wait(struct writer *w, const struct entry *e, int64_t now)
{
    if (e->inline_id) {
        say(w, ": join, running task %llu inline",
            (unsigned long long)e->inline_id);
        return;
    }
    if (!e->published)
        return;
    unsigned long long d = (unsigned long long)e->detail;
    switch (e->kind) {
    case WEFT__WAIT_SLEEP:
        if ((int64_t)e->detail == WEFT__NEVER)
            say(w, ": sleep forever");
        else
            say(w, ": sleep, %.3f s left",
                (double)((int64_t)e->detail - now) / 1e9);
        break;
    case WEFT__WAIT_JOIN:
        say(w, ": join task %llu", d);
        break;
    case WEFT__WAIT_TASKS:
        say(w, ": wait for %llu tasks", d);
        break;
    case WEFT__WAIT_LOCK:
    case WEFT__WAIT_SEM:
    case WEFT__WAIT_EVENT:
    case WEFT__WAIT_COND:
    case WEFT__WAIT_QUEUE:
    case WEFT__WAIT_BARRIER:
        say(w, ": %s %#llx", sync_names[e->kind], d);
        break;
    case WEFT__WAIT_FD_READ:
        say(w, ": fd %llu readable", d);
        break;
    case WEFT__WAIT_FD_WRITE:
        say(w, ": fd %llu writable", d);
        break;
    case WEFT__WAIT_FD_RDWR:
        say(w, ": fd %llu readable or writable", d);
        break;
    case WEFT__WAIT_THREAD:
        say(w, ": to_thread, fn %#llx", d);
        break;
    default:
        break;
    }
}

static void say_task(struct writer *w, const struct entry *e, int64_t now,
                     int64_t coarse_now)
{
    enum weft_task_state st = weft__where_state(e->where);
    int worker = weft__where_worker(e->where);
    say(w, "  task %llu", (unsigned long long)e->id);
    if (e->name[0])
        say(w, " '%s'", e->name);
    say(w, " %s", st <= WEFT_TASK_WAITING ? state_names[st] : "?");
    if (worker >= 0)
        say(w, " on worker %d", worker);
    if (e->born_ns) /* both on the coarse clock */
        say(w, ", age %.3f s", (double)(coarse_now - e->born_ns) / 1e9);
    if (st == WEFT_TASK_WAITING)
        say_wait(w, e, now);
    say(w, "\n");
}

/* Whether worker i is in rt->idle (parked), under idle_lock. */
static void copy_parked(weft_runtime *rt, bool *parked)
{
    pthread_mutex_lock(&rt->idle_lock);
    /* Relaxed: under idle_lock, which every writer holds. */
    uint32_t n = weft__load_rlx_u32(&rt->nr_parked);
    for (uint32_t i = 0; i < n; i++)
        parked[rt->idle[i]] = true;
    pthread_mutex_unlock(&rt->idle_lock);
}

static void say_workers(struct writer *w, weft_runtime *rt,
                        const struct entry *e, size_t n)
{
    bool *parked = weft__calloc(rt->nworkers, sizeof(*parked));
    if (parked)
        copy_parked(rt, parked);
    for (unsigned i = 0; i < rt->nworkers; i++) {
        say(w, "  worker %u: %s, deque %zu", i,
            !parked     ? "?"
            : parked[i] ? "parked"
                        : "awake",
            weft__deque_len(&rt->workers[i]->deque));
        for (size_t k = 0; k < n; k++)
            if (weft__where_state(e[k].where) == WEFT_TASK_RUNNING &&
                weft__where_worker(e[k].where) == (int)i)
                say(w, ", running task %llu", (unsigned long long)e[k].id);
        say(w, "\n");
    }
    weft__free(parked);
}

int weft_runtime_dump(weft_runtime *rt, int fd)
{
    if (!rt)
        rt = weft_runtime_current();
    if (!rt)
        return -EINVAL;
    /* Room for the tasks registered now and some spawned meanwhile. */
    size_t cap = 64;
    for (unsigned i = 0; i <= rt->nworkers; i++) {
        weft__spin_lock(&rt->shards[i].lock);
        cap += rt->shards[i].live;
        weft__spin_unlock(&rt->shards[i].lock);
    }
    cap += cap / 8;
    struct entry *e = weft__malloc(cap * sizeof(*e));
    struct writer *w = weft__malloc(sizeof(*w));
    if (!e || !w) {
        weft__free(e);
        weft__free(w);
        return -ENOMEM;
    }
    size_t n = 0;
    for (unsigned i = 0; i <= rt->nworkers; i++)
        n = copy_shard(&rt->shards[i], e, n, cap);
    int64_t now = weft__now_ns(), coarse_now = weft__coarse_now_ns();
    size_t shown = n < cap ? n : cap;
    w->fd = fd;
    w->err = 0;
    w->len = 0;
    say(w,
        "weft dump: runtime %p, up %.3f s, %u workers, %zu tasks alive, "
        "injection queue %llu\n",
        (void *)rt, (double)(now - rt->start_ns) / 1e9, rt->nworkers, n,
        (unsigned long long)weft__load_rlx_u64(&rt->inject.len));
    say_workers(w, rt, e, shown);
    for (size_t k = 0; k < shown; k++)
        say_task(w, &e[k], now, coarse_now);
    if (n > shown)
        say(w, "  ... and %zu more\n", n - shown);
    flush(w);
    int err = w->err;
    weft__free(w);
    weft__free(e);
    return err ? err : (int)shown;
}

/* --------------------------------------------------------------------------
 * SIGUSR1
 */

static pthread_mutex_t list_lock = PTHREAD_MUTEX_INITIALIZER;
static weft_runtime *list_head; /* under list_lock */
static bool dumper_started;     /* under list_lock */
/* Posted by the handler, waited on by the dumper thread; initialized once,
 * under list_lock, before the handler is installed. */
static sem_t dump_requests;

static void on_signal(int sig)
{
    (void)sig;
    int saved = errno;
    sem_post(&dump_requests);
    errno = saved;
}

static void *dumper_main(void *arg)
{
    (void)arg;
    for (;;) {
        if (sem_wait(&dump_requests) != 0)
            continue; /* EINTR */
        while (sem_trywait(&dump_requests) == 0)
            ; /* one dump serves every request so far */
        pthread_mutex_lock(&list_lock);
        for (weft_runtime *rt = list_head; rt; rt = rt->dump_next)
            (void)weft_runtime_dump(rt, STDERR_FILENO);
        pthread_mutex_unlock(&list_lock);
    }
    return NULL;
}

/* Caller holds list_lock. */
static int start_dumper_locked(void)
{
    if (dumper_started)
        return 0;
    if (sem_init(&dump_requests, 0, 0) != 0)
        return -errno;
    /* The thread takes no signal: SIGUSR1 goes to a thread that runs the
     * handler, never to the one that waits for it. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    pthread_t th;
    int err = pthread_create(&th, NULL, dumper_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err) {
        sem_destroy(&dump_requests);
        return -err;
    }
    pthread_setname_np(th, "weft-dump");
    pthread_detach(th);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    dumper_started = true;
    return 0;
}

int weft__dump_register(weft_runtime *rt)
{
    const char *v = getenv("WEFT_DUMP_ON_SIGNAL");
    if (!v || !*v || strcmp(v, "0") == 0)
        return 0;
    pthread_mutex_lock(&list_lock);
    int err = start_dumper_locked();
    if (!err) {
        rt->dump_next = list_head;
        list_head = rt;
        rt->dump_on_signal = true;
    }
    pthread_mutex_unlock(&list_lock);
    return err;
}

void weft__dump_unregister(weft_runtime *rt)
{
    if (!rt->dump_on_signal)
        return;
    pthread_mutex_lock(&list_lock);
    for (weft_runtime **p = &list_head; *p; p = &(*p)->dump_next) {
        if (*p == rt) {
            *p = rt->dump_next;
            break;
        }
    }
    pthread_mutex_unlock(&list_lock);
    rt->dump_on_signal = false;
}
