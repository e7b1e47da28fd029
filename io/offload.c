/* Offloading blocking work: weft_to_thread and the blocking pool behind it.
 *
 * A task that must block (getaddrinfo, a read from a regular file, user
 * code that calls a blocking library) hands the call to a thread of this
 * pool and parks, so that its worker runs other tasks meanwhile. A plain
 * thread has no worker to keep free: it runs fn itself.
 *
 * The pool. One per process, made on first use: a FIFO of jobs and at most
 * `bound` = min(32, CPUs + 4) threads, as asyncio's default executor.
 * Everything in struct pool is under pool.lock (a pthread mutex: the pool
 * hands over calls that block for microseconds at least, so a lock round
 * trip is noise). A job costs its caller one round trip to queue it, and
 * its pool thread one to report it done, which also takes the next job.
 *
 * Threads start on demand: a submitter that finds fewer idle threads than
 * queued jobs starts one, if fewer than `bound` exist. It starts it under
 * the lock, so that the count and the thread come into being together;
 * the cost, other submitters waiting for a pthread_create, is paid at most
 * `bound` times per burst. A thread that finds no job for IDLE_NS retires.
 * Invariant: while the queue is not empty, at least one thread exists
 * (nthreads > 0), because a thread retires only when it finds the queue
 * empty under the lock. So a submitter whose thread fails to start, with
 * no thread left, knows that its own job is the only one queued, takes it
 * back and reports -ENOMEM.
 *
 * A job and its caller's wait. The caller's struct weft__wait lives on the
 * caller's stack, and the caller returns at once when it is cancelled or
 * its timeout scope expires (sched.h: the interrupter completes the wait),
 * while fn runs on. So the pool thread reaches the wait only through
 * job->wait, under pool.lock, and an interrupted caller detaches it under
 * the same lock before it returns:
 *  - the pool thread, once fn returns, takes the lock and, if job->wait is
 *    set, claims the wait (weft__wait_claim, the one-completer CAS). If it
 *    wins, it wakes the caller after releasing the lock (a claimed waiter
 *    cannot return before its wake), and the caller, which returns 0,
 *    reads the result and frees the job. If it loses, an interrupter
 *    completed the wait first: it leaves the wait alone and marks the job
 *    done, and the interrupted caller frees the job when it detaches;
 *  - the interrupted caller takes the lock, clears job->wait, and frees
 *    the job if it is done already; otherwise the pool thread, finding no
 *    wait, frees it when fn returns.
 * Whether job->done was set when the caller detached decides, under the
 * lock, which of the two is last: each job is freed exactly once, and the
 * pool thread never touches a wait whose caller may have returned. The
 * lock is the pool's own rather than one per job: the pool thread holds
 * it anyway to take its next job, and only interrupted callers add a
 * round trip.
 *
 * fn runs exactly once for every call that does not return -EINVAL or
 * -ENOMEM: also when the caller is interrupted before the job starts, or
 * was interrupted already when it called (then the job is queued with no
 * wait attached). So a caller may hand fn the ownership of arg, whatever
 * the call returns. (asyncio skips a job cancelled before it starts; that
 * leaves its caller unable to tell whether fn ran.)
 *
 * Tracing (WEFT_TRACE, sched/trace.c). Each pool thread holds a slot, a
 * number below WEFT__POOL_THREADS_MAX that no other live pool thread
 * holds (taken and given back under pool.lock), and draws the jobs it runs
 * on the slot's track in their submitter's trace. A job is stamped by its
 * submitter (weft__trace_job_stamp); a stamped job is timed, and drawn
 * only once the pool thread has won the claim of its caller's wait and
 * before it wakes the caller, the one window in which the caller's
 * runtime cannot be freed (trace.c's invariant), so no lock is taken for
 * it. Untraced, a job costs a call and a test at its submitter, and a
 * predictable test around fn and at the wake here.
 *
 * Signals: pool threads block every asynchronous signal, so that a
 * process-directed signal goes to a thread that expects it. Fault signals
 * (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS) stay unblocked: the
 * kernel delivers them to the faulting thread blocked or not (and kills
 * the process if they are blocked), so blocking them would only keep the
 * program's handlers, and the sanitizers', from reporting a crash in fn.
 *
 * Process exit: idle pool threads stay blocked on their condition variable
 * while the process exits. They hold no memory of their own (a job belongs
 * to the thread only while fn runs, and is then reachable from its stack),
 * so LeakSanitizer has nothing to report; they are detached, so
 * ThreadSanitizer reports no thread leak. (It does sleep atexit_sleep_ms,
 * 1 s by default, before a process with live threads exits, to catch
 * races at exit: TSAN_OPTIONS=atexit_sleep_ms=0 skips that.) Joining them
 * at exit would make exit wait for every fn still running, which may
 * block forever. A child of fork() has none of the parent's pool threads:
 * an atfork handler makes its pool empty.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>
#include <unistd.h>

#include "sched/alloc.h"
#include "sched/sched.h"

/* How long a pool thread waits for a job before it retires. */
#define IDLE_NS (10 * 1000000000LL)

/* The most pool threads, whatever the CPU count (asyncio's bound); the
 * slots' bitmap below has a bit for each. */
#define MAX_THREADS WEFT__POOL_THREADS_MAX
_Static_assert(MAX_THREADS <= 32, "pool.slots has 32 bits");

struct job {
    struct job *next; /* under pool.lock, while queued */
    weft_fn fn;       /* written before queueing, then read-only */
    void *arg;
    /* fn's result: written by the pool thread under pool.lock before it
     * claims the wait; read by the caller once woken (the claim and the
     * wake publish it). */
    void *result;
    /* Under pool.lock: the caller's wait, NULL once the caller detached
     * (or when it was interrupted before queueing the job). */
    struct weft__wait *wait;
    bool done; /* under pool.lock: fn has returned */
    /* The submitter's trace stamp (trace.rt NULL: untraced): written
     * before queueing, then read-only. */
    struct weft__trace_job trace;
};

static struct pool {
    pthread_mutex_t lock;
    pthread_cond_t work;     /* idle threads wait here for a job */
    struct job *head, *tail; /* the jobs no thread has taken yet */
    unsigned queued;         /* jobs in that queue */
    unsigned nthreads;       /* threads alive: running a job, idle or new */
    unsigned idle;           /* threads waiting on `work` */
    uint32_t slots;          /* bit k: a live thread holds slot k */
    unsigned bound;          /* written once by pool_init */
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER};

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

/* --------------------------------------------------------------------------
 * The pool (caller holds pool.lock where the name says _locked)
 */

static unsigned cpu_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return (unsigned)CPU_COUNT(&set);
    /* More CPUs than a cpu_set_t holds, or no affinity: what is online. */
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1u;
}

static void cond_init(pthread_cond_t *c)
{
    /* Idle deadlines on the monotonic clock: a change of the wall clock
     * must not retire every thread at once, nor keep them forever. */
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(c, &attr);
    pthread_condattr_destroy(&attr);
}

/* In the child of a fork(): only the forking thread exists, so the pool
 * has no thread, and its lock may have been held by one that is gone. The
 * queued jobs belong to tasks whose workers are gone too: drop them. */
static void pool_after_fork(void)
{
    pthread_mutex_init(&pool.lock, NULL);
    cond_init(&pool.work);
    pool.head = pool.tail = NULL;
    pool.queued = pool.nthreads = pool.idle = 0;
    pool.slots = 0;
}

static void pool_init(void)
{
    cond_init(&pool.work);
    unsigned cpus = cpu_count();
    pool.bound = cpus + 4 < MAX_THREADS ? cpus + 4 : MAX_THREADS;
    /* It fails only without memory; then a fork child's pool believes in
     * threads it does not have, and its offloaded calls wait forever. */
    pthread_atfork(NULL, NULL, pool_after_fork);
}

static void push_locked(struct pool *p, struct job *j)
{
    j->next = NULL;
    if (p->tail)
        p->tail->next = j;
    else
        p->head = j;
    p->tail = j;
    p->queued++;
}

/* The oldest queued job, taken off the queue, or NULL. */
static struct job *pop_locked(struct pool *p)
{
    struct job *j = p->head;
    if (!j)
        return NULL;
    p->head = j->next;
    if (!p->head)
        p->tail = NULL;
    p->queued--;
    return j;
}

/* The next job, waiting for one while there is none. NULL when none came
 * for IDLE_NS: the thread is counted out, its slot given back, and it
 * must exit. */
static struct job *take_locked(struct pool *p, unsigned slot)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += IDLE_NS / 1000000000LL;
    while (!p->head) {
        p->idle++;
        int rc = pthread_cond_timedwait(&p->work, &p->lock, &until);
        p->idle--;
        /* Retire only with the queue empty, under the lock: that keeps
         * "queue not empty => a thread exists" (top of file). */
        if (rc == ETIMEDOUT && !p->head) {
            p->nthreads--;
            p->slots &= ~(1u << slot);
            return NULL;
        }
    }
    return pop_locked(p);
}

/* fn of j returned r. Returns the caller's wait, claimed, to wake once the
 * lock is released, or NULL; *orphan says whether j is the pool's to free
 * (its caller detached). See the top of the file. */
static struct weft__wait *finish_locked(struct job *j, void *r, bool *orphan)
{
    struct weft__wait *w = j->wait;
    j->result = r;
    j->done = true;
    *orphan = w == NULL;
    /* The claim is the seq CAS of the one-completer rule (sched.h): it
     * races the interrupters' claims, and the loser must leave w alone.
     * Winning, it keeps w valid until weft__wait_wake: its waiter cannot
     * return before it is woken. Losing, the caller returns on its own
     * and detaches under pool.lock, which we hold: it frees j then. */
    if (w && weft__wait_claim(w, 0))
        return w;
    return NULL;
}

/* Run j's fn; for a traced job, note when it ran in span[0..1]. */
static void *run_job(const struct job *j, int64_t span[2])
{
    if (WEFT_LIKELY(!j->trace.rt))
        return j->fn(j->arg);
    span[0] = weft__now_ns();
    void *r = j->fn(j->arg);
    span[1] = weft__now_ns();
    return r;
}

static void *pool_main(void *arg)
{
    const unsigned slot = (unsigned)(uintptr_t)arg;
    struct pool *p = &pool;
    weft__tls_pool_slot = slot + 1;
    pthread_setname_np(pthread_self(), "weft-blocking");
    pthread_mutex_lock(&p->lock);
    struct job *j = take_locked(p, slot);
    pthread_mutex_unlock(&p->lock);
    while (j) {
        int64_t span[2] = {0, 0};
        void *r = run_job(j, span);
        bool orphan;
        pthread_mutex_lock(&p->lock);
        struct weft__wait *w = finish_locked(j, r, &orphan);
        struct job *next = pop_locked(p);
        pthread_mutex_unlock(&p->lock);
        /* Outside the lock: the wake may take the runtime's injection
         * lock and wake a worker. After it, the caller may return and
         * free j: neither is touched again here. Before it, the caller
         * (and its runtime, and j) cannot go: the job is drawn then. */
        if (w) {
            if (WEFT_UNLIKELY(j->trace.rt != NULL))
                weft__trace_job(&j->trace, j->fn, span[0], span[1]);
            weft__wait_wake(w);
        }
        if (orphan)
            weft__free(j);
        j = next;
        if (!j) {
            pthread_mutex_lock(&p->lock);
            j = take_locked(p, slot);
            pthread_mutex_unlock(&p->lock);
        }
    }
    return NULL;
}

/* Start a pool thread. 0 or -ENOMEM. */
static int start_thread_locked(struct pool *p)
{
    static const int faults[] = {SIGSEGV, SIGBUS,  SIGFPE,
                                 SIGILL,  SIGTRAP, SIGSYS};
    sigset_t mask, old;
    sigfillset(&mask);
    for (size_t i = 0; i < sizeof(faults) / sizeof(faults[0]); i++)
        sigdelset(&mask, faults[i]);
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0)
        return -ENOMEM;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* The new thread inherits the creator's mask: block around the
     * create, then restore ours (a signal that arrives meanwhile stays
     * pending until then). */
    pthread_sigmask(SIG_SETMASK, &mask, &old);
    /* A free slot: fewer than MAX_THREADS threads live (nthreads < bound),
     * and each holds one. */
    WEFT_ASSERT(p->slots != UINT32_MAX);
    unsigned slot = (unsigned)__builtin_ctz(~p->slots);
    pthread_t th;
    int err = pthread_create(&th, &attr, pool_main, (void *)(uintptr_t)slot);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (err)
        return -ENOMEM; /* EAGAIN: out of threads or memory for a stack */
    p->nthreads++;
    p->slots |= 1u << slot;
    return 0;
}

/* Queue j and make sure a thread will take it. 0, or -ENOMEM when no
 * thread exists and none can start; then j is not queued. */
static int submit(struct job *j)
{
    pthread_once(&pool_once, pool_init);
    struct pool *p = &pool;
    int err = 0;
    pthread_mutex_lock(&p->lock);
    push_locked(p, j);
    if (p->idle >= p->queued) {
        /* An idle thread is left for j: each woken one takes a job. */
        pthread_cond_signal(&p->work);
    } else if (p->nthreads < p->bound && start_thread_locked(p) != 0 &&
               p->nthreads == 0) {
        /* No thread, so the queue was empty before j (top of file). */
        WEFT_ASSERT(p->head == j && p->tail == j);
        pop_locked(p);
        err = -ENOMEM;
    }
    /* Otherwise every thread is busy and the bound reached, or a thread
     * that failed to start is not needed: a running one takes j next. */
    pthread_mutex_unlock(&p->lock);
    return err;
}

/* An interrupted caller lets go of j, which may still be queued or
 * running; see the top of the file. */
static void detach(struct job *j)
{
    pthread_mutex_lock(&pool.lock);
    bool last = j->done;
    j->wait = NULL;
    pthread_mutex_unlock(&pool.lock);
    if (last)
        weft__free(j);
}

/* --------------------------------------------------------------------------
 * weft_to_thread
 */

int weft_to_thread(weft_fn fn, void *arg, void **result)
{
    if (!fn)
        return -EINVAL;
    if (!weft__current()) { /* a plain thread: nothing to keep free */
        void *r = fn(arg);
        if (result)
            *result = r;
        return 0;
    }
    struct job *j = weft__malloc(sizeof(*j));
    if (!j)
        return -ENOMEM;
    *j = (struct job){.fn = fn, .arg = arg};
    weft__trace_job_stamp(&j->trace);
    struct weft__wait w;
    weft__wait_init(&w, NULL, NULL);
    weft__wait_set_kind(&w, WEFT__WAIT_THREAD, (uint64_t)(uintptr_t)fn);
    int intr = weft__wait_arm(&w);
    if (intr) {
        /* Interrupted already: fn runs all the same, with nobody waiting
         * (top of the file), and the interrupt is reported at once. */
        weft__wait_abandon(&w);
        int err = submit(j);
        if (err)
            weft__free(j);
        else
            weft__stats_pool_job(NULL);
        return err ? err : intr;
    }
    j->wait = &w; /* published by the queue's lock */
    int err = submit(j);
    if (err) {
        weft__wait_abandon(&w);
        weft__free(j);
        return err;
    }
    weft__stats_pool_job(NULL);
    /* 0 only if the pool thread completed w: interrupts are negative. */
    int rc = weft__wait_block(&w);
    if (rc == 0) {
        if (result)
            *result = j->result;
        weft__free(j);
        return 0;
    }
    detach(j);
    return rc;
}
