/* pingpong: two parties hand a token back and forth n times; one op is a
 * round trip. The cell's `parties` field picks the primitive (there are
 * always two parties):
 *
 *   parties=1  a pair of events: a party sets the other's event, waits on
 *              its own and clears it (via=event)
 *   parties=2  a pair of one-slot queues (maxsize 1): a party puts the
 *              token into the other's queue and gets it from its own
 *              (via=queue)
 *
 * Modes:
 *   weft         two tasks of a P-worker runtime, weft_event / weft_queue
 *   thread-weft  two plain threads over the same weft primitives
 *   thread       two threads over pthread: an event is a flag under a
 *                mutex and a condvar, a one-slot queue a slot under a
 *                mutex and two condvars
 *   process      two processes over a pair of pipes, 8 bytes a message
 *                (the same cell for both primitives: a pipe is both)
 *
 * Go (unbuffered channels) and Python (asyncio.Event, asyncio.Queue(1))
 * are in bench/go/pingpong.go and bench/py/pingpong.py.
 *
 * The check: the token counts up by one at every hand-off. The first party
 * sends 1 and must get back 2, 4, ..., 2n; the second must get 1, 3, ...,
 * 2n - 1. A token out of sequence, a lost one or an error fails the cell;
 * token= on the RESULT line is the last the first party got (2n).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench.h"

/* How a party sends to the other's end and receives at its own. */
struct pp_ops {
    const char *via;
    int (*send)(void *end, uint64_t token);
    int (*recv)(void *end, uint64_t *token);
};

/* One party. The first sends first. */
struct pp_party {
    const struct pp_ops *ops;
    void *mine, *peer; /* its own end and the other's */
    uint64_t n;        /* round trips */
    bool first;
    uint64_t token; /* the last token it received */
    int err;        /* its first error; -EBADMSG: a token out of sequence */
};

static void party_run(struct pp_party *p)
{
    uint64_t expect = p->first ? 2 : 1;
    int err = p->first ? p->ops->send(p->peer, 1) : 0;
    for (uint64_t i = 0; i < p->n && err == 0; i++, expect += 2) {
        err = p->ops->recv(p->mine, &p->token);
        if (err == 0 && p->token != expect)
            err = -EBADMSG;
        /* The first party's last receipt ends the game. */
        if (err == 0 && (!p->first || i + 1 < p->n))
            err = p->ops->send(p->peer, p->token + 1);
    }
    p->err = err;
}

/* ---------------------------------------------------------------------------
 * The ends */

/* weft_event: the token travels beside the event. The sender writes it
 * before the set, whose release publishes it to the waiter; the sender
 * writes again only after the receiver has answered, so after it read. */
struct wev_end {
    weft_event ev;
    uint64_t token;
};

static int wev_send(void *end, uint64_t token)
{
    struct wev_end *e = end;
    e->token = token;
    return weft_event_set(&e->ev);
}

static int wev_recv(void *end, uint64_t *token)
{
    struct wev_end *e = end;
    int err = weft_event_wait(&e->ev);
    if (err < 0)
        return err;
    /* Only the other party sets it, and only after this party answers. */
    weft_event_clear(&e->ev);
    *token = e->token;
    return 0;
}

static const struct pp_ops wev_ops = {"event", wev_send, wev_recv};

/* weft_queue of maxsize 1: the token is the item. */
static int wq_send(void *end, uint64_t token)
{
    return weft_queue_put(end, (void *)(uintptr_t)token);
}

static int wq_recv(void *end, uint64_t *token)
{
    void *item;
    int err = weft_queue_get(end, &item);
    *token = (uintptr_t)item;
    return err;
}

static const struct pp_ops wq_ops = {"queue", wq_send, wq_recv};

/* pthread event: a flag under a mutex and a condvar, cleared by the
 * waiter that consumed it. */
struct pev_end {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool set;       /* under mu */
    uint64_t token; /* under mu */
};

static int pev_send(void *end, uint64_t token)
{
    struct pev_end *e = end;
    pthread_mutex_lock(&e->mu);
    e->token = token;
    e->set = true;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return 0;
}

static int pev_recv(void *end, uint64_t *token)
{
    struct pev_end *e = end;
    pthread_mutex_lock(&e->mu);
    while (!e->set)
        pthread_cond_wait(&e->cv, &e->mu);
    e->set = false;
    *token = e->token;
    pthread_mutex_unlock(&e->mu);
    return 0;
}

static const struct pp_ops pev_ops = {"event", pev_send, pev_recv};

/* pthread one-slot queue: a slot under a mutex, a condvar per direction. */
struct pq_end {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    bool full;     /* under mu */
    uint64_t item; /* under mu */
};

static int pq_send(void *end, uint64_t token)
{
    struct pq_end *e = end;
    pthread_mutex_lock(&e->mu);
    while (e->full)
        pthread_cond_wait(&e->not_full, &e->mu);
    e->item = token;
    e->full = true;
    pthread_cond_signal(&e->not_empty);
    pthread_mutex_unlock(&e->mu);
    return 0;
}

static int pq_recv(void *end, uint64_t *token)
{
    struct pq_end *e = end;
    pthread_mutex_lock(&e->mu);
    while (!e->full)
        pthread_cond_wait(&e->not_empty, &e->mu);
    *token = e->item;
    e->full = false;
    pthread_cond_signal(&e->not_full);
    pthread_mutex_unlock(&e->mu);
    return 0;
}

static const struct pp_ops pq_ops = {"queue", pq_send, pq_recv};

/* A pipe: fd[1] is written by the other party, fd[0] read by this one. */
struct pipe_end {
    int fd[2];
};

static int pipe_send(void *end, uint64_t token)
{
    return bench_write_full(((struct pipe_end *)end)->fd[1], &token,
                            sizeof token);
}

static int pipe_recv(void *end, uint64_t *token)
{
    return bench_read_full(((struct pipe_end *)end)->fd[0], token,
                           sizeof *token);
}

static const struct pp_ops pipe_ops = {"pipe", pipe_send, pipe_recv};

/* ---------------------------------------------------------------------------
 * Running the two parties */

/* One party's end, whatever the mode. */
union pp_end {
    struct wev_end wev;
    weft_queue wq;
    struct pev_end pev;
    struct pq_end pq;
    struct pipe_end pipe;
};

static void *party_main(void *arg)
{
    party_run(arg);
    return NULL;
}

/* The weft cell's root task: party 0 itself, party 1 a task it spawns (as
 * Go's cell is its main goroutine and one more). Joining two spawned
 * parties instead would run the first inline on the root's stack, whose
 * every wait then also publishes itself to the joiner (cancel.c). */
static void *weft_main(void *arg)
{
    struct pp_party *p = arg;
    weft_task *peer = weft_spawn(party_main, &p[1]);
    if (!peer) {
        p[1].err = -errno;
        return NULL;
    }
    party_run(&p[0]);
    if (p[0].err)
        (void)weft_cancel(peer); /* it may wait for a token never sent */
    int err = weft_join(peer, NULL);
    if (err < 0 && p[1].err == 0)
        p[1].err = err;
    return NULL;
}

static int run_threads(struct pp_party p[2])
{
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        int err = pthread_create(&th[i], NULL, party_main, &p[i]);
        if (err) {
            if (i == 1) /* the first waits forever: give the cell up */
                exit(3);
            return -err;
        }
    }
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    return 0;
}

/* The second party is a child process; it reports through its exit
 * status only (its token is not needed: the first party's proves the
 * whole sequence). Each process closes the ends it does not use, so that
 * a peer's death ends a read with -EPIPE instead of a hang. */
static int run_processes(struct pp_party p[2], union pp_end e[2])
{
    struct pipe_end *ends[2] = {&e[0].pipe, &e[1].pipe};
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        close(ends[1]->fd[1]);
        close(ends[0]->fd[0]);
        party_run(&p[1]);
        _exit(p[1].err == 0 && p[1].token == 2 * p[1].n - 1 ? 0 : 1);
    }
    close(ends[0]->fd[1]);
    close(ends[1]->fd[0]);
    party_run(&p[0]);
    close(ends[1]->fd[1]); /* the child's read fails if it is still waiting */
    int status;
    if (waitpid(pid, &status, 0) < 0)
        return -errno;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        p[1].err = -ECHILD;
    else
        p[1].token = 2 * p[1].n - 1;
    close(ends[0]->fd[0]);
    return 0;
}

/* ---------------------------------------------------------------------------
 * Making the ends, by mode and primitive */

static int ends_init(const char *mode, bool queue, union pp_end e[2],
                     const struct pp_ops **ops)
{
    int err = 0;
    for (int i = 0; i < 2 && err == 0; i++) {
        if (strcmp(mode, "process") == 0) {
            *ops = &pipe_ops;
            err = pipe(e[i].pipe.fd) < 0 ? -errno : 0;
        } else if (strcmp(mode, "thread") == 0 && queue) {
            *ops = &pq_ops;
            pthread_mutex_init(&e[i].pq.mu, NULL);
            pthread_cond_init(&e[i].pq.not_empty, NULL);
            pthread_cond_init(&e[i].pq.not_full, NULL);
            e[i].pq.full = false;
        } else if (strcmp(mode, "thread") == 0) {
            *ops = &pev_ops;
            pthread_mutex_init(&e[i].pev.mu, NULL);
            pthread_cond_init(&e[i].pev.cv, NULL);
            e[i].pev.set = false;
        } else if (queue) {
            *ops = &wq_ops;
            err = weft_queue_init(&e[i].wq, 1);
        } else {
            *ops = &wev_ops;
            err = weft_event_init(&e[i].wev.ev);
        }
    }
    return err;
}

/* The weft primitives say whether they were left clean: -EBUSY for a
 * waiter still queued, -ENOTEMPTY for an item left behind. (The pipes are
 * closed by run_processes.) */
static int ends_destroy(const struct pp_ops *ops, union pp_end e[2])
{
    int err = 0;
    for (int i = 0; i < 2; i++) {
        int rc = 0;
        if (ops == &wq_ops) {
            rc = weft_queue_destroy(&e[i].wq);
        } else if (ops == &wev_ops) {
            rc = weft_event_destroy(&e[i].wev.ev);
        } else if (ops == &pev_ops) {
            pthread_cond_destroy(&e[i].pev.cv);
            pthread_mutex_destroy(&e[i].pev.mu);
        } else if (ops == &pq_ops) {
            pthread_cond_destroy(&e[i].pq.not_empty);
            pthread_cond_destroy(&e[i].pq.not_full);
            pthread_mutex_destroy(&e[i].pq.mu);
        }
        if (rc < 0 && err == 0)
            err = rc;
    }
    return err;
}

static int pingpong_run(const struct bench_cell *c, struct bench_result *res)
{
    if ((c->parties != 1 && c->parties != 2) || c->n == 0)
        return -EINVAL;
    bool weft = strcmp(c->mode, "weft") == 0;
    if (!weft && strcmp(c->mode, "thread-weft") != 0 &&
        strcmp(c->mode, "thread") != 0 && strcmp(c->mode, "process") != 0)
        return -ENOTSUP;
    union pp_end e[2];
    const struct pp_ops *ops = NULL;
    int err = ends_init(c->mode, c->parties == 2, e, &ops);
    if (err < 0)
        return err;
    struct pp_party p[2] = {
        {.ops = ops, .mine = &e[0], .peer = &e[1], .n = c->n, .first = true},
        {.ops = ops, .mine = &e[1], .peer = &e[0], .n = c->n, .first = false},
    };
    int64_t t0 = bench_now_ns(), ns;
    if (weft)
        err = bench_weft_run(c->workers, weft_main, p, NULL, &ns, res);
    else if (ops == &pipe_ops)
        err = run_processes(p, e);
    else
        err = run_threads(p);
    if (!weft)
        ns = bench_now_ns() - t0;
    if (err < 0)
        return err;
    int left = ends_destroy(ops, e);
    for (int i = 0; i < 2; i++)
        if (p[i].err < 0)
            bench_perror(i ? "pingpong, second party" : "pingpong, first party",
                         p[i].err);
    if (left < 0)
        bench_perror("pingpong: destroying the ends", left);
    res->ns_per_op = (double)ns / (double)c->n;
    res->ok = p[0].err == 0 && p[1].err == 0 && left == 0 &&
              p[0].token == 2 * c->n && p[1].token == 2 * c->n - 1;
    bench_extra(res, "via=%s token=%llu", ops->via,
                (unsigned long long)p[0].token);
    return 0;
}

/* ---------------------------------------------------------------------------
 * The plan */

static bool is_python(const char *mode)
{
    return strcmp(mode, "asyncio") == 0 || strcmp(mode, "uvloop") == 0;
}

static uint64_t pingpong_default_n(const struct bench_cell *c, bool full)
{
    /* A round trip between threads or processes is two wake-ups through
     * the kernel, several microseconds; asyncio's is a few as well. */
    if (strcmp(c->mode, "thread") == 0 || strcmp(c->mode, "process") == 0 ||
        strcmp(c->mode, "thread-weft") == 0 || is_python(c->mode))
        return full ? 500000 : 50000;
    return full ? 10000000 : 1000000;
}

static void plan_group(struct bench_plan *plan, unsigned parties)
{
    const char *group = parties == 1 ? "a pair of events (parties=1)"
                                     : "a pair of one-slot queues (parties=2)";
    bool full = bench_plan_full(plan);
    unsigned w[3], nw = bench_plan_worker_counts(plan, w);
    struct bench_cell c = {.parties = parties};
    const char *py = parties == 1 ? "asyncio.Event" : "asyncio.Queue(1)";

    c.mode = "weft";
    for (unsigned i = 0; i < nw; i++)
        bench_plan_add(plan, group, "weft", w[i], pingpong_default_n(&c, full),
                       0, parties, NULL);
    c.mode = "thread-weft";
    bench_plan_add(plan, group, "thread-weft", 2, pingpong_default_n(&c, full),
                   0, parties, "2 plain threads on weft's primitives");
    c.mode = "thread";
    bench_plan_add(plan, group, "thread", 2, pingpong_default_n(&c, full), 0,
                   parties,
                   parties == 1 ? "mutex + condvar + flag per event"
                                : "mutex + 2 condvars + slot per queue");
    c.mode = "process";
    if (parties == 1)
        bench_plan_add(plan, group, "process", 2, pingpong_default_n(&c, full),
                       0, parties, "a pair of pipes");
    else
        bench_plan_note(plan, group,
                        "process: see the events group, the same pair of "
                        "pipes");
    c.mode = "go";
    for (unsigned i = 0; i < nw; i++)
        bench_plan_add(plan, group, "go", w[i], pingpong_default_n(&c, full), 0,
                       parties, "unbuffered channels");
    c.mode = "asyncio";
    bench_plan_add(plan, group, "asyncio", 1, pingpong_default_n(&c, full), 0,
                   parties, py);
    bench_plan_add(plan, group, "uvloop", 1, pingpong_default_n(&c, full), 0,
                   parties, py);
    bench_plan_note(plan, group,
                    "thread-weft, thread, process, asyncio, uvloop: n is "
                    "1/20 of weft's, every hand-off is a wake-up of a few "
                    "microseconds");
    bench_plan_note(plan, group,
                    "threadpool, processpool: skipped, a pool runs each job "
                    "to completion; a job cannot wait for another");
}

static void pingpong_plan(struct bench_plan *plan)
{
    plan_group(plan, 1);
    plan_group(plan, 2);
}

const struct bench_workload bench_pingpong = {
    .name = "pingpong",
    .op = "ns per round trip",
    .run = pingpong_run,
    .default_n = pingpong_default_n,
    .plan = pingpong_plan,
};
